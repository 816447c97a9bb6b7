"""The dashboard as two processes on one port (a separate module: its fixture
converges the scenario to processes: 2 and back). They share the port
(SO_REUSEPORT) and one cap of 500 clients, counted in a file both map: the
role's capacity check, through Apache, with the excess refused at once and
the kernel's spread over the processes read from that file while held."""

import json
import struct
import time

import pytest
from conftest import (
    LOAD_CLIENT,
    STAGED_LOAD_CLIENT,
    Probe,
    converge,
    enabled_apache_config,
    put_file,
    wsgi_daemon_groups,
)
from fault_tests import on_every_host

CAPACITY, EXCESS = 500, 100
CLIENTS_FILE = "/run/mod_wsgi_ws_sidecar_metrics/metrics-sidecar.clients"
SIDECAR_TITLE = "^.wsgi:metrics-sid"
# files/mod_wsgi_ws_sidecar/clients.py: an 8-byte header, then 64 counters.
SLOTS = struct.Struct("=64q")
RESULT = "/opt/mws-test/processes-load.json"


@pytest.fixture(scope="module")
def two_processes():
    converge(
        {
            "mod_wsgi_ws_sidecar_sidecars": [
                {"name": "metrics-sidecar", "mount": "/metrics/", "port": 8765, "processes": 2}
            ]
        }
    )
    yield
    converge()


def slot_counts(host) -> list[int]:
    """The clients each live process counts in the shared file (0s left out)."""
    raw = host.check_output("od -An -v -tx1 %s | tr -d ' \\n'", CLIENTS_FILE)
    return [n for n in SLOTS.unpack_from(bytes.fromhex(raw), 8) if n]


def hold_in_background(host, clients: int, excess: int, hold: float) -> None:
    """The load client (bench/loadclient.py) in the background: holds
    `clients` through Apache for `hold` s, then tries `excess` more."""
    put_file(host, STAGED_LOAD_CLIENT, LOAD_CLIENT.read_text())
    host.run_test("rm -f %s", RESULT)
    host.run_test(
        "(timeout 120 python3 %s --url ws://127.0.0.1/metrics/ws --clients %s --excess %s"
        " --http-url http://127.0.0.1/ --hold %s > %s.tmp 2>&1 && mv %s.tmp %s &)",
        STAGED_LOAD_CLIENT,
        str(clients),
        str(excess),
        str(hold),
        RESULT,
        RESULT,
        RESULT,
    )


def wait_held(host, clients: int) -> list[int]:
    deadline, held = time.monotonic() + 60, []
    while sum(held) < clients:
        assert time.monotonic() < deadline, f"never held {clients}: {held}"
        time.sleep(0.2)
        held = slot_counts(host)
    return held


def load_report(host) -> dict:
    deadline = time.monotonic() + 90
    while not host.file(RESULT).exists:
        assert time.monotonic() < deadline, "the load client did not finish"
        time.sleep(0.5)
    return json.loads(host.file(RESULT).content_string)


def test_two_processes_share_the_sidecars_port(host, two_processes):
    groups = wsgi_daemon_groups(enabled_apache_config(host))
    assert "processes=2" in groups["metrics-sidecar"].split()
    pids = host.check_output("pgrep -f %s", SIDECAR_TITLE).split()
    assert len(pids) == 2
    listening = host.check_output("ss -Hltn '( sport = :8765 )'").splitlines()
    assert len(listening) == 2, listening
    assert all("127.0.0.1:8765" in line for line in listening)


def test_the_cap_holds_across_both_and_the_excess_is_refused_at_once(two_processes):
    def check(host) -> dict:
        hold_in_background(host, CAPACITY, EXCESS, hold=6)
        held = wait_held(host, CAPACITY)
        report = load_report(host)
        clients, excess, http = report["held"], report["excess"], report["http"]
        assert (clients["connected"], clients["hung"], clients["errors"]) == (CAPACITY, 0, 0)
        assert (excess["connected"], excess["refused"], excess["hung"]) == (0, EXCESS, 0)
        assert excess["refuse_seconds_max"] < 1
        assert http["failed"] == 0 and http["ok"] > 0
        # Both processes held some; the kernel's hash spreads them nearly evenly.
        assert len(held) == 2 and min(held) > CAPACITY // 4, held
        return {"per_process": held, "refuse_seconds_max": excess["refuse_seconds_max"]}

    print(json.dumps({"two_processes": on_every_host(check)}))


def test_a_process_killed_at_the_cap_frees_its_places_and_the_other_serves_on(two_processes):
    def check(host) -> dict:
        hold_in_background(host, CAPACITY, 0, hold=15)
        held = wait_held(host, CAPACITY)
        pid = host.check_output("pgrep -f %s", SIDECAR_TITLE).split()[0]
        host.run_test("kill -9 %s", pid)
        started = time.monotonic()
        # The sidecar was full; the dead process's count is not: a new client
        # gets in at once, through the process that lives (mod_wsgi needs 1-2 s
        # to start another).
        answer = Probe(host).ws_eventually("/metrics/ws", within=5)
        admitted_after = round(time.monotonic() - started, 2)
        assert answer["frames"][0]["data"]["type"] == "snapshot"
        assert admitted_after < 2
        report = load_report(host)
        assert report["held"]["connected"] == CAPACITY
        deadline = time.monotonic() + 20
        while len(host.check_output("pgrep -f %s", SIDECAR_TITLE).split()) < 2:
            assert time.monotonic() < deadline, "mod_wsgi did not start a new process"
            time.sleep(0.5)
        return {"held": held, "admitted_after_s": admitted_after}

    print(json.dumps({"kill_at_cap": on_every_host(check)}))
