"""The fault tests every scenario runs against its own listener: kill -9 of
the sidecar's daemon process, graceful and full Apache restarts, and clients
that stall. A scenario's test_faults.py imports them and defines the
`listener` fixture ("tcp:PORT" or "unix:PATH"). Every fault is injected and
measured inside the container (molecule/faults.py), against its own loopback;
each test prints its figures as one JSON line. The repeated faults run on
every host of the scenario at once (each container's faults are its own):
a scenario's time, not a weaker test; the stalled clients, whose ticks are
timed, one host after the other."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import scenario_hosts
from faults import (
    KILL_RECOVERY,
    RESTART_RECOVERY,
    assert_every_trial_back,
    assert_stalled_clients_dropped_without_harm,
    error_log_since,
    error_log_size,
    trials,
)

__all__ = [
    "test_apache_restarts_20_times_in_a_row_leave_one_sidecar",
    "test_kill_9_of_the_sidecar_10_times_in_a_row",
    "test_stalled_clients_neither_delay_others_nor_grow_the_sidecar",
]
WS_PATH = "/metrics/ws"


def on_every_host(check) -> dict:
    """check(host) on every host of the scenario at once: host name -> what it
    returned. Fails naming each host whose check failed."""
    hosts = {host.backend.get_hostname(): host for host in scenario_hosts()}
    with ThreadPoolExecutor(len(hosts)) as pool:
        running = {name: pool.submit(check, host) for name, host in hosts.items()}
    results, failures = {}, {}
    for name, future in running.items():
        try:
            results[name] = future.result()
        except AssertionError as exc:
            failures[name] = str(exc)
    assert not failures, failures
    return results


def test_kill_9_of_the_sidecar_10_times_in_a_row(listener):
    # Each time: a new daemon process, and a frame through Apache within 5 s.
    def check(host) -> dict:
        results = trials(host, "kill", 10, WS_PATH, listener)
        figures = assert_every_trial_back(results, listener, within=KILL_RECOVERY)
        assert len(set(figures["pids"])) == 10
        return figures

    print(json.dumps({"kill_9": on_every_host(check)}))


@pytest.mark.parametrize("action", ["graceful", "restart"])
def test_apache_restarts_20_times_in_a_row_leave_one_sidecar(listener, action):
    # apache2ctl graceful, or systemctl restart apache2: the listener is back
    # each time, with one sidecar process (Apache's child) on one listener, and
    # for a unix socket nothing but the socket in its directory.
    def check(host) -> dict:
        log_size = error_log_size(host)
        results = trials(host, action, 20, WS_PATH, listener)
        figures = assert_every_trial_back(results, listener, within=RESTART_RECOVERY)
        # Each stop was orderly: the new process never had to retry its bind.
        log = error_log_since(host, log_size)
        assert "serving loop died" not in log, log[-3000:]
        return figures

    print(json.dumps({action: on_every_host(check)}))


def test_stalled_clients_neither_delay_others_nor_grow_the_sidecar(host, listener):
    figures = assert_stalled_clients_dropped_without_harm(host, WS_PATH, listener)
    print(json.dumps({"stalled_clients": figures}))
