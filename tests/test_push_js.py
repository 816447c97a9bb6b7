"""The browser's side of the push channel (files/mod_wsgi_ws_sidecar/push.js), run in Node with a
fake WebSocket and clock: it survives frames that are not its protocol, and
backs off with jitter when a subscription is refused as unavailable."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "js" / "push_feed_harness.js"
SCRIPT = ROOT / "files" / "mod_wsgi_ws_sidecar" / "push.js"


def play(*steps: dict[str, Any]) -> dict[str, Any]:
    assert shutil.which("node"), "node (on every project machine) runs push.js here"
    result = subprocess.run(
        ["node", str(HARNESS), str(SCRIPT), json.dumps(steps)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def frame(**fields: Any) -> dict[str, str]:
    return {"frame": json.dumps(fields)}


def test_frames_that_are_not_the_protocol_are_ignored_and_the_feed_goes_on() -> None:
    seen = play(
        {"open": True},
        {"subscribe": "news"},
        {"frame": "{not json"},
        {"frame": "null"},
        {"frame": "[1, 2]"},
        frame(type="message", channel="news", id="5-0", data={"n": 1}),
    )
    assert seen["thrown"] == []
    assert ["message", {"n": 1}, "5-0"] in seen["events"]


def test_unavailable_is_asked_again_later_and_later_with_jitter() -> None:
    refused = frame(type="refused", channel="news", reason="unavailable")
    seen = play(
        {"open": True},
        {"subscribe": "news"},
        *[step for _ in range(6) for step in (refused, {"fire": True})],
    )
    # The first request, then one more after each refusal.
    assert seen["sent"] == [{"type": "subscribe", "channel": "news", "token": "token-news"}] * 7
    delays = seen["timers"]
    assert len(delays) == 6
    for n, delay in enumerate(delays):
        ceiling = min(500 * 2**n, 10000)
        assert ceiling / 2 <= delay <= ceiling, (n, delay)
    assert len(set(delays)) > 1  # jittered, not a fixed step


def test_a_message_at_or_before_the_last_position_is_not_delivered_twice() -> None:
    seen = play(
        {"open": True},
        {"subscribe": "news"},
        frame(type="subscribed", channel="news", epoch="E", position="4-0", replayed=0),
        frame(type="message", channel="news", id="5-0", data=1),
        frame(type="message", channel="news", id="5-0", data=1),
        frame(type="message", channel="news", id="4-9", data=0),
        frame(type="message", channel="news", id="6-0", data=2),
    )
    assert [e[1] for e in seen["events"] if e[0] == "message"] == [1, 2]


def test_a_token_is_renewed_before_it_expires_and_an_expired_one_resumes() -> None:
    seen = play(
        {"open": True},
        {"subscribe": "orders.1"},
        frame(type="subscribed", channel="orders.1", epoch="E", position="4-0", expires_in=3),
        {"fire": True},
        frame(type="message", channel="orders.1", id="5-0", data=1),
        frame(type="expired", channel="orders.1", reason="token expired"),
    )
    assert seen["timers"] == [2000]
    renew, again = seen["sent"][1:]
    assert renew == {"type": "renew", "channel": "orders.1", "token": "token-orders.1"}
    assert again == {
        "type": "subscribe",
        "channel": "orders.1",
        "token": "token-orders.1",
        "since": "5-0",
        "epoch": "E",
    }


def test_a_revoked_channel_is_told_and_forgotten() -> None:
    seen = play(
        {"open": True},
        {"subscribe": "orders.1"},
        frame(type="revoked", channel="orders.1", reason="the application revoked this access"),
        frame(type="message", channel="orders.1", id="5-0", data=1),
    )
    assert ["revoked", "the application revoked this access"] in seen["events"]
    assert not [e for e in seen["events"] if e[0] == "message"]
