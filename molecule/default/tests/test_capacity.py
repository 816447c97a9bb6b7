"""Capacity with the role's default sizing (150 HTTP requests, 500 WebSockets):
Apache runs with the computed mpm_event limits, holds every planned WebSocket
with the WSGI application still answering, and refuses the excess at once.
The load client is the benchmark's (bench/loadclient.py), run inside the
container against its own loopback."""

import json
import time

from conftest import Probe, load, proxy_passes, staged_probe
from fault_tests import on_every_host

CAPACITY = 500
# What plugins/module_utils/sizing.py gives for the defaults (tests/test_mpm_sizing.py).
SERVER_LIMIT, THREADS_PER_CHILD, POOL_PER_CHILD, OPEN_FILES = 3, 388, 388, 8192


def test_apache_runs_with_the_computed_limits(probe):
    # The running scoreboard has a slot for each of ServerLimit x ThreadLimit workers.
    summary = probe.ws("/metrics/ws", frames=1)["frames"][0]["data"]["summary"]
    assert summary["slots"] == SERVER_LIMIT * THREADS_PER_CHILD


def test_websocket_route_is_bounded_per_child(host):
    routes = proxy_passes(host)
    assert list(routes) == ["/metrics/"]
    assert f"max={POOL_PER_CHILD}" in routes["/metrics/"]
    assert "acquire=100" in routes["/metrics/"]


def test_apache_and_sidecar_may_open_enough_files(host):
    assert host.check_output("systemctl show -P LimitNOFILE apache2") == str(OPEN_FILES)
    # Debian's apachectl sets "ulimit -n 8192" unless told not to; the limit
    # in force must be the drop-in's, whatever its value.
    environment = host.check_output("systemctl show -P Environment apache2").split()
    assert "APACHE_ULIMIT_MAX_FILES=true" in environment
    sidecar_pid = host.check_output("pgrep -f '^.wsgi:metrics-sid'").split()[0]
    limits = host.file(f"/proc/{sidecar_pid}/limits").content_string
    assert [line.split()[3:5] for line in limits.splitlines() if "open files" in line] == [
        [str(OPEN_FILES), str(OPEN_FILES)]
    ]


def test_planned_websockets_held_and_excess_refused_at_once(host):
    report = load(host, "ws://127.0.0.1/metrics/ws", clients=CAPACITY, excess=100)
    held, excess, http = report["held"], report["excess"], report["http"]
    assert (held["connected"], held["refused"], held["hung"], held["errors"]) == (CAPACITY, 0, 0, 0)
    assert held["messages"] >= CAPACITY  # every held client got snapshots through Apache
    # The dashboard itself refuses client 501 with a 503, before the handshake.
    assert (excess["connected"], excess["refused"], excess["hung"]) == (0, 100, 0)
    assert excess["refuse_seconds_max"] < 1
    assert http["failed"] == 0 and http["ok"] > 0
    assert http["p99_ms"] < 1000, http


def test_a_graceful_stop_with_a_websocket_open_ends_within_seconds():
    # Debian's unit stops Apache with graceful-stop. A tunnelled WebSocket
    # ends only when its sidecar does, after the children, so unbounded the
    # stop waits as long as the client stays (measured: over 30 s, until the
    # client left). GracefulShutdownTimeout (5 s) bounds it; Apache then ends
    # the children within about 10 s. On every host at once.
    def stop(host) -> float:
        host.run_test(
            "(timeout 90 python3 %s ws /metrics/ws --frames 10000 --timeout 85 >/dev/null 2>&1 &)",
            staged_probe(host),
        )
        deadline = time.monotonic() + 10
        while not host.check_output("ss -Htn state established '( sport = :80 )'"):
            assert time.monotonic() < deadline, "the WebSocket did not open"
            time.sleep(0.2)
        pid = host.check_output("systemctl show -p MainPID --value apache2")
        started = time.monotonic()
        host.run_test("apache2ctl graceful-stop")
        while host.file(f"/proc/{pid}").exists and time.monotonic() - started < 45:
            time.sleep(0.2)
        stopped_after = round(time.monotonic() - started, 1)
        host.run_test("systemctl start apache2")
        Probe(host).ws_eventually("/metrics/ws", within=20)
        assert stopped_after < 30, f"Apache still running {stopped_after} s after graceful-stop"
        return stopped_after

    print(json.dumps({"graceful_stop_seconds": on_every_host(stop)}))
