"""What the dashboard reads beyond one snapshot (files/sidecar_trends.py):
the sidecars' routes, query strings hidden, open WebSockets counted on
recorded scoreboards, rates and virtual hosts between two ticks, the cap's
warning, and the ten minutes of history."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from conftest import FIXTURES_DIR, load_scoreboard
from mod_wsgi_ws_sidecar import core
from mod_wsgi_ws_sidecar import dashboard as sidecar
from mod_wsgi_ws_sidecar import trends as sidecar_trends
from mod_wsgi_ws_sidecar.trends import Route, Trends

ROUTES = [Route("metrics", 10, path="/metrics/ws"), Route("echo", 4, host="ws.example")]


def test_routes_as_the_role_writes_them() -> None:
    parsed = sidecar_trends.parse_routes(
        [
            {"name": "metrics", "max_clients": 10, "path": "/metrics/ws"},
            {"name": "echo", "max_clients": 4, "host": "WS.example"},
        ]
    )
    assert parsed == tuple(ROUTES)


@pytest.mark.parametrize(
    ("routes", "words"),
    [
        ({}, "'sidecars' must be a list"),
        ([{"name": "m", "max_clients": 1}], "'sidecars[0]' must give either a path or a host"),
        ([{"name": "m", "max_clients": 1, "path": "/a", "host": "h"}], "either a path or a host"),
        ([{"name": "m", "max_clients": 0, "path": "/a"}], "'sidecars[0].max_clients'"),
        ([{"name": "m", "max_clients": True, "path": "/a"}], "'sidecars[0].max_clients'"),
        ([{"name": "", "max_clients": 1, "path": "/a"}], "'sidecars[0].name'"),
        ([{"name": "m", "max_clients": 1, "path": "a"}], "'sidecars[0].path' must start with /"),
        ([{"name": "m", "max_clients": 1, "path": "/a", "colour": 1}], "'sidecars[0]' must be"),
    ],
)
def test_bad_routes_are_named(routes: object, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        sidecar_trends.parse_routes(routes)
    # and the dashboard's config error names the key
    with pytest.raises(core.ConfigError, match=re.escape("config key")):
        sidecar.parse_config({"listen": {"port": 1}, "sidecars": routes})


@pytest.mark.parametrize(
    ("request_line", "shown"),
    [
        ("GET /login?token=s3cr3t&email=a@b.example HTTP/1.1", "GET /login?[redacted] HTTP/1.1"),
        ("GET /a HTTP/1.1", "GET /a HTTP/1.1"),
        ("GET /cut-short?session=abcdef", "GET /cut-short?[redacted]"),  # truncated by Apache
        ("GET /?", "GET /?[redacted]"),
        ("", ""),
    ],
)
def test_query_strings_are_hidden(request_line: str, shown: str) -> None:
    assert sidecar_trends.redact_query(request_line) == shown


@pytest.mark.parametrize(
    ("request_line", "path"),
    [
        ("GET /metrics/ws HTTP/1.1", "/metrics/ws"),
        # What Apache itself resolves before matching a location.
        ("GET /x/../metrics/ws HTTP/1.1", "/metrics/ws"),
        ("GET //metrics//./ws/ HTTP/1.1", "/metrics/ws"),
        ("GET /metrics/%77s?a=/../b HTTP/1.1", "/metrics/ws"),
        ("GET /../../metrics/ws HTTP/1.1", "/metrics/ws"),
        ("GET http://ws.example/x/../metrics/ws HTTP/1.1", "/metrics/ws"),
        ("GET / HTTP/1.1", "/"),
        ("OPTIONS * HTTP/1.1", "*"),
        ("", ""),
    ],
)
def test_request_paths_are_read_as_apache_routes_them(request_line: str, path: str) -> None:
    assert sidecar_trends.request_path(request_line) == path


@pytest.mark.parametrize("recorded", ["debian12", "debian13"])
def test_open_websockets_are_counted_on_the_sidecars_routes(recorded: str) -> None:
    # Recorded with one dashboard WebSocket open and one plain request in flight.
    workers = sidecar.active_workers(load_scoreboard(FIXTURES_DIR / f"scoreboard-{recorded}.json"))
    count = sidecar_trends.websockets_by_sidecar
    assert count(workers, [Route("metrics", 5, path="/metrics/ws")]) == {"metrics": 1}
    assert count(workers, [Route("metrics", 5, path="/metrics/")]) == {"metrics": 2}
    assert count(workers, [Route("push", 5, path="/push/ws")]) == {"push": 0}


def test_a_virtual_hosts_every_busy_worker_counts_and_idle_ones_never() -> None:
    workers = [
        {"state": "busy_write", "request": "GET /anything HTTP/1.1", "vhost": "WS.example:443"},
        {"state": "keepalive", "request": "GET /metrics/ws HTTP/1.1", "vhost": "site"},
        {"state": "busy_read", "request": "GET /metrics/ws?x=1 HTTP/1.1", "vhost": "site"},
        {"state": "busy_write", "request": "", "vhost": ""},
    ]
    assert sidecar_trends.websockets_by_sidecar(workers, ROUTES) == {"metrics": 1, "echo": 1}


@pytest.mark.parametrize(("open_now", "warned"), [(8, False), (9, True), (10, True)])
def test_near_the_cap_from_nine_tenths(open_now: int, warned: bool) -> None:
    assert sidecar_trends.near_cap(open_now, 10) is warned


def tick(trends: Trends, snapshot: dict, now: float) -> dict:
    return trends.tick(snapshot, sidecar.summarise(snapshot), sidecar.active_workers(snapshot), now)


def serve(snapshot: dict, process: int, thread: int, requests: int, vhost: str) -> None:
    worker = snapshot["processes"][process]["workers"][thread]
    worker["access_count"] += requests
    worker["bytes_served"] += 1000 * requests
    worker["vhost"] = vhost


def test_rates_virtual_hosts_and_sidecars_between_two_ticks(synthetic: dict) -> None:
    trends = Trends(ROUTES, 1.0)
    first = tick(trends, synthetic, 100.0)
    assert first["rates"] == {"rps": None, "bps": None}  # nothing to compare with yet
    later = copy.deepcopy(synthetic)
    serve(later, 0, 2, 6, "www.example.test:80")
    serve(later, 1, 0, 4, "api.example.test:443")
    second = tick(trends, later, 102.0)
    assert second["rates"] == {"rps": 5.0, "bps": 5000.0}
    assert second["sidecars"] == [
        {"name": "metrics", "websockets": 1, "max_clients": 10, "near_cap": False},
        {"name": "echo", "websockets": 0, "max_clients": 4, "near_cap": False},
    ]
    # Busy now, of which WebSockets, and requests/s by the virtual host each slot last served.
    assert second["vhosts"] == [
        {"vhost": "www.example.test:80", "busy": 2, "websockets": 1, "rps": 3.0},
        {"vhost": "api.example.test:443", "busy": 0, "websockets": 0, "rps": 2.0},
    ]
    assert second["vhosts_omitted"] == 0


def test_after_a_restart_no_rates_and_no_requests_counted(synthetic: dict) -> None:
    trends = Trends(ROUTES, 1.0)
    tick(trends, synthetic, 100.0)
    restarted = copy.deepcopy(synthetic)
    for proc in restarted["processes"]:
        if proc["pid"]:
            proc["pid"] += 1000  # new children: their slots start counting again
            for worker in proc["workers"]:
                worker["access_count"] = 1
                worker["bytes_served"] = 10
    figures = tick(trends, restarted, 101.0)
    assert figures["rates"] == {"rps": None, "bps": None}
    assert all(row["rps"] == 0.0 for row in figures["vhosts"])


def test_many_virtual_hosts_are_bounded_and_counted(synthetic: dict) -> None:
    snapshot = copy.deepcopy(synthetic)
    workers = snapshot["processes"][1]["workers"]
    for i in range(sidecar_trends.MAX_LISTED_VHOSTS + 3):
        workers.append({**workers[0], "status": "W", "vhost": f"site{i:02}.example:80"})
    figures = tick(Trends(ROUTES, 1.0), snapshot, 1.0)
    assert len(figures["vhosts"]) == sidecar_trends.MAX_LISTED_VHOSTS
    assert figures["vhosts_omitted"] == 4  # 14 virtual hosts with a busy worker


def test_the_history_holds_ten_minutes_oldest_first(synthetic: dict) -> None:
    trends = Trends(ROUTES, 2.0)
    for second in range(0, 1300, 2):
        tick(trends, synthetic, float(second))
    history = trends.history()
    assert history["type"] == "history"
    assert history["sidecars"] == [
        {"name": "metrics", "max_clients": 10},
        {"name": "echo", "max_clients": 4},
    ]
    points = history["points"]
    assert len(points) == 301  # 600 s of ticks every 2 s, both ends included
    assert points[0][0] == 1298.0 - 600 and points[-1][0] == 1298.0
    assert points[-1][1:] == [2, 0.0, 0.0, [1, 0]]  # busy, requests/s, bytes/s, WebSockets


def frame_keys(value: object, parent: str = "") -> set[str]:
    """Every key of a frame, but those of the state counts, which the page
    draws whole (Object.entries)."""
    if isinstance(value, list):
        return set().union(*(frame_keys(item, parent) for item in value))
    if not isinstance(value, dict) or parent == "workers_by_state":
        return set()
    keys = set(value)
    for key, item in value.items():
        keys |= frame_keys(
            item, "workers_by_state" if parent == "summary" and key == "workers" else key
        )
    return keys


def test_every_key_of_a_tick_frame_is_one_the_page_draws(synthetic: dict) -> None:
    """Every byte of a frame goes to every client every tick: what the page
    does not read stays out of it."""
    trends = Trends(ROUTES, 1.0)
    sidecar.build_payload(synthetic, 1, 1.0, trends)
    payload = sidecar.build_payload(synthetic, 2, 2.0, trends)
    page = (Path(sidecar.__file__).parent / "dashboard.html").read_text()
    assert payload["workers"] and payload["vhosts"] and payload["sidecars"], payload
    undrawn = sorted(key for key in frame_keys(payload) if not re.search(rf"\b{key}\b", page))
    assert not undrawn, undrawn
