"""The fleet's dashboard (files/sidecar_fleet.py): its settings, this host's
row, every host's row and its age on Redis's clock, and two hosts' links
sharing one stream (the WebSockets a row counts are sidecar_trends', tested
in test_sidecar_trends.py).

The links' Redis here is `Stream`, an in-memory stand-in for the three
stream commands they use (XADD, XREAD, XREVRANGE) on a clock the test moves;
the real Redis is the fleet scenario's (molecule/fleet)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from mod_wsgi_ws_sidecar import core
from mod_wsgi_ws_sidecar import dashboard as sidecar
from mod_wsgi_ws_sidecar import fleet as sidecar_fleet
from mod_wsgi_ws_sidecar import trends as sidecar_trends

FLEET = {
    "host": "web1",
    "redis": {"url": "redis://10.0.0.5:6379/0", "username": "u", "password": "p" * 20},
}
SUMMARY = {"busy": 3, "idle": 61, "slots": 64, "accesses": 100}
# What sidecar_trends.Trends.tick gives the row: the rate, each sidecar's WebSockets.
TRENDS = {
    "rates": {"rps": 25.0, "bps": 1000.0},
    "sidecars": [{"websockets": 2, "max_clients": 500}, {"websockets": 1, "max_clients": 20}],
}


def config(**overrides: Any) -> sidecar_fleet.FleetConfig:
    return sidecar_fleet.parse_fleet({**FLEET, **overrides})


def test_the_settings_the_role_writes() -> None:
    parsed = config()
    assert (parsed.host, parsed.redis_url) == ("web1", "redis://10.0.0.5:6379/0")
    assert (parsed.redis_username, parsed.redis_password) == ("u", "p" * 20)
    assert parsed.silent_after == 5.0
    assert "p" * 20 not in repr(parsed)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"host": ""}, "'fleet.host'"),
        ({"redis": {"url": "http://x"}}, "'fleet.redis'"),
        ({"redis": "redis://x"}, "'fleet.redis'"),
        ({"silent_after": -1}, "'fleet.silent_after'"),
        ({"colour": "red"}, "'fleet.colour'"),
    ],
)
def test_bad_settings_are_named(overrides: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        config(**overrides)


def test_the_dashboards_config_carries_the_fleet_and_names_a_bad_key() -> None:
    listen = {"host": "127.0.0.1", "port": 8765}
    assert sidecar.parse_config({"listen": listen, "fleet": FLEET}).fleet == config()
    assert sidecar.parse_config({"listen": listen}).fleet is None
    with pytest.raises(core.ConfigError, match=re.escape("config key 'fleet.host' must name")):
        sidecar.parse_config({"listen": listen, "fleet": {**FLEET, "host": 7}})


def test_this_hosts_row_adds_up_its_sidecars() -> None:
    view = sidecar_fleet.FleetView(config())
    first = view.tick(SUMMARY, TRENDS, now=1000.0)
    assert first == {
        "hosts": [
            {
                "host": "web1",
                "busy": 3,
                "idle": 61,
                "slots": 64,
                "rps": 25.0,
                "websockets": 3,
                "cap": 520,
                "age": 0.0,
                "silent": False,
            }
        ],
        "silent_after": 5.0,
        "error": None,
    }


def entry(ms: int, host: str, **row: Any) -> tuple[str, dict[str, str]]:
    return f"{ms}-0", {"host": host, "row": json.dumps({"busy": 1, "cap": 500, **row})}


def test_other_hosts_are_aged_on_redis_clock_and_marked_silent() -> None:
    view = sidecar_fleet.FleetView(config())
    view.tick(SUMMARY, TRENDS, now=50.0)
    # Our own row taken at Redis's 10,000 ms: web2 was heard 1 s before, web3 6 s.
    view.heard([entry(4_000, "web3"), entry(9_000, "web2", busy=7), entry(9_500, "web1")])
    view.sent("10000-0", now=50.0)
    hosts = {h["host"]: h for h in view.view(now=50.5)["hosts"]}
    assert list(hosts) == ["web1", "web2", "web3"]
    assert (hosts["web2"]["busy"], hosts["web2"]["age"], hosts["web2"]["silent"]) == (7, 1.5, False)
    assert (hosts["web3"]["age"], hosts["web3"]["silent"]) == (6.5, True)
    # This host's own row is its latest tick, never the one read back.
    assert hosts["web1"]["busy"] == 3


def test_a_malformed_row_is_skipped_and_before_redis_answers_no_age_is_known() -> None:
    view = sidecar_fleet.FleetView(config())
    view.heard([("1-0", {"host": "web2", "row": "{not json"}), ("x-0", {"host": "web3"})])
    view.heard([("2-0", {"row": "{}"}), entry(3, "web4", rps="lots", idle=True, busy=float("nan"))])
    (web4,) = view.view(now=1.0)["hosts"]
    assert (web4["host"], web4["age"], web4["silent"]) == ("web4", None, True)
    # What is not a number reaches no dashboard: each renders it as "-".
    assert (web4["rps"], web4["idle"], web4["busy"], web4["cap"]) == (None, None, None, 500)


class Stream:
    """XADD, XREAD and XREVRANGE of one Redis stream, IDs on a clock the test moves."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, str]]] = []
        self.ms = 1_000
        self.down = False

    def _check(self, key: str) -> None:
        if self.down:
            raise ConnectionError("Connection refused")
        assert key == sidecar_fleet.FLEET_KEY

    async def xadd(self, key: str, fields: dict, maxlen: int, approximate: bool) -> str:
        self._check(key)
        seq = sum(1 for entry_id, _ in self.entries if entry_id.startswith(f"{self.ms}-"))
        self.entries.append((f"{self.ms}-{seq}", dict(fields)))
        del self.entries[:-maxlen]
        return self.entries[-1][0]

    async def xread(self, streams: dict[str, str], count: int) -> list:
        ((key, after),) = streams.items()
        self._check(key)
        newer = [e for e in self.entries if position(e[0]) > position(after)][:count]
        return [[key, newer]] if newer else []

    async def xrevrange(self, key: str, newest: str, oldest: str, count: int) -> list:
        self._check(key)
        return list(reversed(self.entries))[:count]


def position(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def test_two_hosts_see_each_other_and_one_that_stops_goes_silent() -> None:
    stream, now = Stream(), [100.0]
    views = {h: sidecar_fleet.FleetView(config(host=h)) for h in ("web1", "web2")}
    links = {
        h: sidecar_fleet.FleetLink(v, stream, (ConnectionError,), 1.0, lambda: now[0])
        for h, v in views.items()
    }

    async def second(hosts: tuple[str, ...]) -> None:
        for host in hosts:
            views[host].tick(SUMMARY, TRENDS, now[0])
            await links[host].exchange()
        stream.ms += 1000
        now[0] += 1.0

    async def scenario() -> None:
        for _ in range(3):
            await second(("web1", "web2"))
        for _ in range(6):  # web2 dies: only web1 goes on
            await second(("web1",))

    asyncio.run(scenario())
    web1, web2 = views["web1"].view(now[0])["hosts"]
    assert (web1["host"], web2["host"]) == ("web1", "web2")
    assert (web2["age"], web2["silent"]) == (7.0, True)
    # A dashboard started afterwards finds web2's last row at once.
    late = sidecar_fleet.FleetView(config(host="web3"))
    asyncio.run(sidecar_fleet.FleetLink(late, stream, (ConnectionError,), 1.0).exchange())
    assert sorted(late.rows) == ["web1", "web2"]


def test_redis_out_of_reach_is_shown_and_the_link_recovers() -> None:
    stream = Stream()
    view = sidecar_fleet.FleetView(config())
    link = sidecar_fleet.FleetLink(view, stream, (ConnectionError,), 0.01)
    view.tick(SUMMARY, TRENDS, 1.0)
    stream.down = True

    async def run_a_while() -> None:
        task = asyncio.ensure_future(link.run())
        await asyncio.sleep(0.05)
        assert view.view(1.0)["error"].startswith(
            "cannot reach the fleet's Redis at redis://10.0.0.5:6379/0: ConnectionError("
        )
        stream.down = False
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(asyncio.wait_for(run_a_while(), 5))
    assert view.view(1.0)["error"] is None
    assert stream.entries and stream.entries[-1][1]["host"] == "web1"
    # Neither the view nor the error names the password.
    assert "p" * 20 not in json.dumps(view.view(1.0))


def test_a_snapshot_frame_carries_the_fleet(synthetic: dict) -> None:
    view = sidecar_fleet.FleetView(config())
    trends = sidecar_trends.Trends([sidecar_trends.Route("metrics", 40, path="/metrics/ws")], 1.0)
    payload = sidecar.build_payload(synthetic, 1, 10.0, trends, view)
    row = payload["fleet"]["hosts"][0]
    assert (row["host"], row["websockets"], row["cap"]) == ("web1", 1, 40)
    assert "fleet" not in sidecar.build_payload(synthetic, 1, 10.0, trends)
