"""The push channel's rules and its sidecar: channel names, tokens, positions,
resume and reset, and subscriptions over real WebSockets, against the
in-memory Redis of push_standin.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mod_wsgi_ws_sidecar import core, push_sidecar
from mod_wsgi_ws_sidecar import metrics as sidecar_metrics
from mod_wsgi_ws_sidecar import push as shared
from push_standin import (
    NAME,
    PREFIX,
    SECRET,
    Streams,
    config,
    messages,
    receive,
    run,
    serving,
    subscribe,
    wait_for,
)


def token_problem(secret: str, channel: str, token: Any, now: float) -> str | None:
    """Why `token` does not open `channel` (None: it does)."""
    grant = shared.read_token(secret, channel, token, now)
    return grant if isinstance(grant, str) else None


def access_problem(channel: Any, token: Any) -> str | None:
    """Why the test config refuses a subscription (None: it admits it)."""
    found = push_sidecar.access(config(), channel, token, time.time(), push_sidecar.Revocations())
    return found if isinstance(found, str) else None


# --- names and tokens ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "valid"),
    [
        ("orders.42", True),
        ("user:7@site", True),
        ("a" * 100, True),
        ("a" * 101, False),
        ("", False),
        (".hidden", False),
        ("with space", False),
        ("star*", False),
        (42, False),
    ],
)
def test_channel_names(channel: Any, valid: bool) -> None:
    assert shared.valid_channel(channel) is valid


def test_a_token_opens_its_channel_until_it_expires() -> None:
    token = shared.sign_token(SECRET, "orders.42", ttl=60, now=1000)
    assert token.startswith("1060.")
    assert token_problem(SECRET, "orders.42", token, now=1059) is None
    assert token_problem(SECRET, "orders.42", token, now=1060) == "token expired"


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (None, "no valid token"),
        ("", "no valid token"),
        ("garbage", "no valid token"),
        ("1060.abc.def", "no valid token"),
        ("-5.abc", "no valid token"),
        ("9999999999999.abc", "no valid token"),
        ("1060.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "token not valid for this channel"),
    ],
)
def test_malformed_and_forged_tokens_are_refused(token: Any, problem: str) -> None:
    assert token_problem(SECRET, "orders.42", token, now=1000) == problem


def test_a_token_for_another_channel_or_key_is_refused() -> None:
    other_channel = shared.sign_token(SECRET, "orders.43", ttl=60, now=1000)
    other_key = shared.sign_token("k" * 40, "orders.42", ttl=60, now=1000)
    for token in (other_channel, other_key):
        assert token_problem(SECRET, "orders.42", token, 1000) == (
            "token not valid for this channel"
        )


def test_the_expiry_cannot_be_moved() -> None:
    token = shared.sign_token(SECRET, "orders.42", ttl=60, now=1000)
    moved = "9060." + token.split(".")[1]
    assert token_problem(SECRET, "orders.42", moved, 2000) == ("token not valid for this channel")


def test_messages_must_be_json_and_bounded() -> None:
    assert shared.encode_message({"a": "é"}) == '{"a":"é"}'
    with pytest.raises(ValueError, match="JSON-serialisable"):
        shared.encode_message({"a": object()})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        shared.encode_message(float("nan"))
    with pytest.raises(ValueError, match="at most"):
        shared.encode_message("x" * shared.MAX_MESSAGE_BYTES)


# --- positions and resume (pure) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1700000000000-0", (1700000000000, 0)),
        ("0-0", (0, 0)),
        ("12-3", (12, 3)),
        ("12", None),
        ("12-3-4", None),
        ("a-1", None),
        ("-1", None),
        (None, None),
        (12, None),
    ],
)
def test_positions(text: Any, parsed: Any) -> None:
    assert push_sidecar.position(text) == parsed


def test_positions_compare_in_stream_order() -> None:
    assert push_sidecar.position("9-5") < push_sidecar.position("10-0")
    assert push_sidecar.position("10-2") < push_sidecar.position("10-10")


def state(
    first: str | None = "5-0", last: str = "20-0", length: int = 10, added: int = 10, **more: Any
) -> push_sidecar.StreamState:
    return push_sidecar.StreamState(
        now_ms=30,
        exists=True,
        first=push_sidecar.position(first),
        last=push_sidecar.position(last),
        length=length,
        added=added,
        **more,
    )


TRIMMED = {"length": 10, "added": 15}
NEVER = push_sidecar.StreamState(now_ms=30)
LOST = "the history was lost (Redis started afresh)"
TOO_FAR = "the history no longer reaches back that far"


@pytest.mark.parametrize(
    ("since", "client_epoch", "stream", "problem"),
    [
        ("7-0", "E", state(), None),
        ("7-0", "E", state(first="7-0", **TRIMMED), None),  # its own message is the oldest left
        ("7-0", "E", state(first="7-1", **TRIMMED), TOO_FAR),
        ("7-0", "E", state(first="9-0", **TRIMMED), TOO_FAR),
        ("7-0", "E", state(first="9-0"), None),  # nothing was ever trimmed: all of it is here
        ("7-0", "OLD", state(), LOST),
        ("7-0", None, state(), LOST),
        ("seven", "E", state(), "not a position"),
        ("²-1", "E", state(), "not a position"),
        ("7-0", "E", NEVER, None),  # nothing was ever published: nothing to replay
        ("20-0", "E", state(first="20-0", **TRIMMED), None),
        ("25-0", "E", state(first="20-0", **TRIMMED), None),  # after the newest: nothing missed
        ("19-0", "E", state(first=None, length=0, added=3), TOO_FAR),  # trimmed away
        (
            "7-0",
            "E",
            state(deleted=(8, 0)),
            "messages after that position were deleted",
        ),
        # "0-0" is no wildcard: history 3, five published since, two are gone.
        ("0-0", "E", state(first="3-0", last="5-0", length=3, added=5), TOO_FAR),
        ("0-0", "E", state(first="1-0", last="5-0", length=5, added=5), None),
    ],
)
def test_resume_or_reset(
    since: str, client_epoch: Any, stream: push_sidecar.StreamState, problem: str | None
) -> None:
    assert push_sidecar.resume_problem(since, client_epoch, "E", stream) == problem


EXPIRED = "the channel expired meanwhile"


@pytest.mark.parametrize(
    ("since", "stream", "problem"),
    [
        # Gone: it may have lived and expired since, unless that is too recent to tell.
        ("7-0", NEVER, EXPIRED),  # now 30, 23 ms later, a TTL of 20
        ("15-0", NEVER, None),
        # Created anew long after: a whole life of the channel may lie between.
        ("1-0", state(first="25-0", last="26-0", length=2, added=2), EXPIRED),
        ("10-0", state(first="25-0", last="26-0", length=2, added=2), None),
        ("25-0", state(first="25-0", last="26-0", length=2, added=2), None),
    ],
)
def test_a_client_older_than_the_channel_ttl_resets(
    since: str, stream: push_sidecar.StreamState, problem: str | None
) -> None:
    assert push_sidecar.resume_problem(since, "E", "E", stream, ttl_ms=20) == problem


def test_a_new_subscription_stands_after_everything_added_and_before_anything_later() -> None:
    assert push_sidecar.start_position(state(last="20-3")) == "20-3"
    # No message yet: the millisecond before Redis's now, older than any ID to come.
    assert push_sidecar.start_position(NEVER) == "29-0"
    assert push_sidecar.position("29-0") < push_sidecar.position("30-0")


def test_xinfo_stream_as_redis_answers_it() -> None:
    info = {
        "length": 2,
        "first-entry": ("3-1", {"d": "1"}),
        "last-generated-id": "9-0",
        "entries-added": 7,
        "max-deleted-entry-id": "2-0",
    }
    assert push_sidecar.stream_state(info, 40) == push_sidecar.StreamState(
        now_ms=40, exists=True, first=(3, 1), last=(9, 0), length=2, added=7, deleted=(2, 0)
    )
    assert push_sidecar.stream_state(None, 40) == push_sidecar.StreamState(now_ms=40)


@pytest.mark.parametrize(
    ("channel", "token", "problem"),
    [
        ("news", None, None),
        ("demo.anything", None, None),
        ("demo", None, "no valid token"),  # "demo.*" does not match "demo"
        ("orders.42", None, "no valid token"),
        # (channel, lifetime): signed when the test runs, not when it is
        # collected, which may be more than a minute earlier on a busy host.
        ("orders.42", ("orders.42", 60), None),
        ("orders.42", ("orders.42", -1), "token expired"),
        ("orders.42", ("orders.4", 60), "token not valid for this channel"),
        ("bad name", None, "not a channel name"),
        (None, None, "not a channel name"),
    ],
)
def test_who_may_subscribe(channel: Any, token: Any, problem: str | None) -> None:
    if isinstance(token, tuple):
        token = shared.sign_token(SECRET, *token)
    assert access_problem(channel, token) == problem


def test_message_frames_carry_channel_position_and_data() -> None:
    text = push_sidecar.message_text("a.b", "5-1", {"d": '{"x":[1,"<"]}'})
    assert json.loads(text) == {
        "type": "message",
        "channel": "a.b",
        "id": "5-1",
        "data": {"x": [1, "<"]},
    }
    assert push_sidecar.message_text("a", "5-1", {"d": "{not json"}) is None
    assert push_sidecar.message_text("a", "5-1", {"other": "1"}) is None


ROLE_WRITTEN = {
    "name": NAME,
    "kind": "push",
    "listen": {"host": "127.0.0.1", "port": 8766},
    "max_clients": 500,
    "origins": [],
    "heartbeat": 30.0,
    "send_timeout": 1.0,
    "max_send_buffer": 262144,
    "public_channels": ["demo"],
    "history": 1000,
    "max_channels": 8,
    "max_replay": 200,
    "redis": {"url": "redis://127.0.0.1:6379/0", "username": "u", "password": "p" * 20},
    "token_secret": SECRET,
    "secret": "s" * 43,
}


def test_config_as_the_role_writes_it() -> None:
    parsed = push_sidecar.parse_config(ROLE_WRITTEN)
    assert (parsed.port, parsed.max_clients, parsed.public_channels) == (8766, 500, ("demo",))
    assert (parsed.history, parsed.max_channels, parsed.max_replay) == (1000, 8, 200)
    assert (parsed.redis_username, parsed.redis_password) == ("u", "p" * 20)
    assert SECRET not in repr(parsed) and "p" * 20 not in repr(parsed)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_secret": "short"}, "token_secret"),
        ({"redis": {"url": "http://x"}}, "redis.url"),
        ({"redis": "redis://x"}, "'redis'"),
        ({"public_channels": "demo"}, "public_channels"),
        ({"max_clients": 0}, "max_clients"),
        ({"surprise": 1}, "surprise"),
        ({"listen": {"host": "127.0.0.1"}}, "listen.port"),
    ],
)
def test_bad_config_is_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(core.ConfigError, match=message):
        push_sidecar.parse_config({**ROLE_WRITTEN, **change})


# --- the sidecar against an in-memory Redis ------------------------------------------------


def test_a_subscriber_gets_what_is_published_after_it_subscribed() -> None:
    async def scenario() -> None:
        redis = Streams()
        before = await redis.publish("news", {"n": 0})
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            answer = await subscribe(ws, "news")
            assert answer == {
                "type": "subscribed",
                "channel": "news",
                "epoch": "E1",
                "position": before,
                "replayed": 0,
            }
            ids = [await redis.publish("news", {"n": n}) for n in (1, 2)]
            got = await messages(ws, 2)
            assert [m["id"] for m in got] == ids
            assert [m["data"] for m in got] == [{"n": 1}, {"n": 2}]

    run(scenario())


def test_a_client_that_comes_back_gets_exactly_what_it_missed_then_live() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (_push, client):
            async with client.ws_connect("/ws") as ws:
                first = await subscribe(ws, "news")
                await redis.publish("news", {"n": 1})
                (seen,) = await messages(ws, 1)
            missed = [await redis.publish("news", {"n": n}) for n in (2, 3, 4)]
            async with client.ws_connect("/ws") as ws:
                await ws.send_json(
                    {
                        "type": "subscribe",
                        "channel": "news",
                        "since": seen["id"],
                        "epoch": first["epoch"],
                    }
                )
                replayed = await messages(ws, 3)
                assert [m["id"] for m in replayed] == missed
                answer = await receive(ws)
                assert (answer["type"], answer["replayed"], answer["position"]) == (
                    "subscribed",
                    3,
                    missed[-1],
                )
                live = await redis.publish("news", {"n": 5})
                assert [m["id"] for m in await messages(ws, 1)] == [live]

    run(scenario())


def test_messages_published_during_the_catch_up_come_once_and_in_order() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client):
            since = await redis.publish("news", {"n": 0})
            for n in range(1, 6):
                await redis.publish("news", {"n": n})
            # The replay takes a while; meanwhile the relay delivers newer entries.
            redis.range_delay = 0.3
            async with client.ws_connect("/ws") as watcher:
                await subscribe(watcher, "news")  # makes the relay watch the channel
                async with client.ws_connect("/ws") as ws:
                    await ws.send_json(
                        {
                            "type": "subscribe",
                            "channel": "news",
                            "since": since,
                            "epoch": push.epoch,
                        }
                    )
                    # Its subscription is in place, its replay under way.
                    await wait_for(lambda: len(push.channels["news"].subscribers) == 2)
                    for n in range(6, 11):
                        await redis.publish("news", {"n": n})
                    replayed = await messages(ws, 5)
                    answer = await receive(ws)
                    assert answer["type"] == "subscribed" and answer["replayed"] == 5
                    live = await messages(ws, 5)
                    assert [m["data"]["n"] for m in replayed + live] == list(range(1, 11))
                    with pytest.raises(TimeoutError):
                        await ws.receive(timeout=0.3)

    run(scenario())


def test_a_client_whose_history_was_trimmed_is_told_to_reset() -> None:
    async def scenario() -> None:
        redis = Streams()
        old = await redis.publish("news", {"n": 0}, maxlen=3)
        for n in range(1, 5):
            newest = await redis.publish("news", {"n": n}, maxlen=3)
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            answer = await subscribe(ws, "news", since=old, epoch="E1")
            assert answer == {
                "type": "reset",
                "channel": "news",
                "epoch": "E1",
                "position": newest,
                "reason": "the history no longer reaches back that far",
            }
            live = await redis.publish("news", {"n": 5}, maxlen=3)
            assert [m["id"] for m in await messages(ws, 1)] == [live]

    run(scenario())


def test_when_redis_loses_its_data_every_subscriber_resets() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client), client.ws_connect("/ws") as ws:
            await redis.publish("news", {"n": 1})
            await subscribe(ws, "news")
            redis.down = True
            assert await receive(ws, timeout=3) == {"type": "status", "feed": "interrupted"}
            redis.lose_everything()
            redis.values[shared.epoch_key(PREFIX)] = "E2"
            redis.down = False
            reset = await receive(ws, timeout=5)
            assert (reset["type"], reset["epoch"]) == ("reset", "E2")
            # A point in Redis's time before any message to come, never "0-0".
            assert push_sidecar.position(reset["position"]) > (int(time.time() * 1000) - 60_000, 0)
            assert await receive(ws) == {"type": "status", "feed": "live"}
            assert push.epoch == "E2"
            live = await redis.publish("news", {"n": 2})
            assert [m["id"] for m in await messages(ws, 1)] == [live]

    run(scenario())


def test_a_new_epoch_this_sidecar_missed_reaches_every_subscriber_on_the_next_subscribe() -> None:
    """In a fleet, Redis may lose its data while this sidecar's feed stays up
    (another host's sidecar saw it): a subscription never starts from the
    stale epoch, and the subscribers already here are told to reset."""

    async def scenario() -> None:
        redis = Streams()
        async with (
            serving(redis) as (push, client),
            client.ws_connect("/ws") as old,
            client.ws_connect("/ws") as new,
        ):
            assert (await subscribe(old, "news"))["epoch"] == push.epoch
            redis.lose_everything()
            redis.values[shared.epoch_key(PREFIX)] = "E2"
            answer = await subscribe(new, "news")
            assert (answer["type"], answer["epoch"]) == ("subscribed", "E2")
            reset = await receive(old)
            assert (reset["type"], reset["channel"], reset["epoch"]) == ("reset", "news", "E2")
            assert reset["reason"] == "the history was lost (Redis started afresh)"
            assert push.epoch == "E2"

    run(scenario())


def test_during_an_outage_clients_stay_connected_and_the_feed_resumes() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            await subscribe(ws, "news")
            redis.down = True
            assert await receive(ws, timeout=3) == {"type": "status", "feed": "interrupted"}
            assert (await client.get("/")).status == 503
            async with client.ws_connect("/ws") as other:
                assert await receive(other) == {"type": "status", "feed": "interrupted"}
                refused = await subscribe(other, "news")
                assert refused["type"] == "refused" and refused["reason"].startswith("unavailable")
            redis.down = False
            assert await receive(ws, timeout=5) == {"type": "status", "feed": "live"}
            assert (await client.get("/")).status == 200
            live = await redis.publish("news", {"n": 1})
            assert [m["id"] for m in await messages(ws, 1)] == [live]
            assert not ws.closed

    run(scenario())


def test_private_channels_need_a_valid_token_before_any_message() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client), client.ws_connect("/ws") as ws:
            for token, reason in (
                (None, "no valid token"),
                ("123.forged", "token not valid for this channel"),
                (shared.sign_token(SECRET, "orders.1", -1), "token expired"),
                (shared.sign_token(SECRET, "orders.2", 60), "token not valid for this channel"),
            ):
                answer = await subscribe(ws, "orders.1", token=token)
                assert answer == {"type": "refused", "channel": "orders.1", "reason": reason}
            assert push.channels == {}
            await redis.publish("orders.1", {"secret": True})
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.3)
            ok = await subscribe(ws, "orders.1", token=shared.sign_token(SECRET, "orders.1", 60))
            assert ok["type"] == "subscribed"

    run(scenario())


def test_bad_requests_and_unsubscribe() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client), client.ws_connect("/ws") as ws:
            await ws.send_str("not json")
            assert (await receive(ws))["reason"] == "bad request"
            await ws.send_json({"type": "publish", "channel": "news"})
            assert (await receive(ws))["reason"] == "bad request"
            await subscribe(ws, "news")
            assert (await subscribe(ws, "news"))["reason"] == "already subscribed"
            await ws.send_json({"type": "unsubscribe", "channel": "news"})
            await wait_for(lambda: push.channels == {})
            await redis.publish("news", {"n": 1})
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.3)

    run(scenario())


def test_one_frame_per_message_reaches_every_subscriber_and_is_counted() -> None:
    async def scenario() -> str:
        redis = Streams()
        async with serving(redis) as (push, client):
            sockets = [await client.ws_connect("/ws") for _ in range(20)]
            for ws in sockets:
                await subscribe(ws, "news")
            ids = [await redis.publish("news", {"n": n}) for n in range(5)]
            for ws in sockets:
                assert [m["id"] for m in await messages(ws, 5)] == ids
                await ws.close()
            return push.metrics.exposition()[0].decode()

    # What the dashboard's Prometheus endpoint shows of it.
    text = run(scenario())
    for sample in (
        'mod_wsgi_ws_sidecar_push_messages_total{sidecar="push"} 5.0',
        'mod_wsgi_ws_sidecar_push_deliveries_total{sidecar="push"} 100.0',
        'mod_wsgi_ws_sidecar_fanout_seconds_count{sidecar="push"} 5.0',
        'mod_wsgi_ws_sidecar_websockets_accepted_total{sidecar="push"} 20.0',
    ):
        assert sample in text, text


def test_only_requests_with_the_secret_are_served() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, secret="s" * 43) as (_push, client):
            assert (await client.get("/")).status == 403
            answer = await client.get("/", headers={core.SECRET_HEADER: "s" * 43})
            assert answer.status == 200 and "PushFeed" in await answer.text()
            script = await client.get("/push.js", headers={core.SECRET_HEADER: "s" * 43})
            assert "class PushFeed" in await script.text()

    run(scenario())


def test_a_full_sidecar_refuses_before_the_handshake() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, max_clients=2) as (_push, client):
            held = [await client.ws_connect("/ws") for _ in range(2)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws")
            assert refused.value.status == 503
            for ws in held:
                await ws.close()

    run(scenario())


def test_a_cross_site_page_cannot_open_the_push_websocket() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, origins=("https://app.example:443",)) as (_push, client):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
            assert refused.value.status == 403
            allowed = await client.ws_connect("/ws", headers={"Origin": "https://app.example"})
            assert (await subscribe(allowed, "news"))["type"] == "subscribed"
            await allowed.close()

    run(scenario())


def test_the_memory_redis_uses_and_its_channels_reach_the_dashboards_directory(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        redis = Streams()
        for channel in ("news", "orders.1", "orders.2"):
            await redis.publish(channel, {"n": 1})
        await redis.revoke(subject="user:7")  # the control stream is no channel
        async with serving(redis, metrics_dir=str(tmp_path)) as (_push, _client):
            await wait_for(lambda: (tmp_path / "redis-push.json").exists())
        (stats,) = sidecar_metrics.read_redis_stats(str(tmp_path), time.time())
        assert stats["name"] == "push" and stats["channels"] == 3
        assert stats["used_memory"] > 1000 and stats["maxmemory"] == 0

    run(scenario())
