"""The sidecar on loopback TCP survives faults, again and again: kill -9 of its
daemon process, graceful and full Apache restarts, and clients that stall.
Every fault is injected and measured inside the container (molecule/faults.py),
against its own loopback; each test prints its figures as one JSON line."""

import json

import pytest
from faults import (
    KILL_RECOVERY,
    RESTART_RECOVERY,
    assert_every_trial_back,
    assert_stalled_clients_dropped_without_harm,
    error_log_since,
    error_log_size,
    trials,
)

WS_PATH = "/metrics/ws"
LISTEN = "tcp:8765"


def test_kill_9_of_the_sidecar_10_times_in_a_row(host):
    # Each time: a new daemon process, and a frame through Apache within 5 s.
    results = trials(host, "kill", 10, WS_PATH, LISTEN)
    figures = assert_every_trial_back(results, LISTEN, within=KILL_RECOVERY)
    assert len(set(figures["pids"])) == 10
    print(json.dumps({"kill_9": figures}))


@pytest.mark.parametrize("action", ["graceful", "restart"])
def test_apache_restarts_20_times_in_a_row_leave_one_sidecar(host, action):
    # apache2ctl graceful, or systemctl restart apache2: the listener is back
    # each time, with one sidecar process (Apache's child) on one listener.
    log_size = error_log_size(host)
    results = trials(host, action, 20, WS_PATH, LISTEN)
    figures = assert_every_trial_back(results, LISTEN, within=RESTART_RECOVERY)
    # Each stop was orderly: the new process never had to retry its bind.
    log = error_log_since(host, log_size)
    assert "serving loop died" not in log, log[-3000:]
    print(json.dumps({action: figures}))


def test_stalled_clients_neither_delay_others_nor_grow_the_sidecar(host):
    figures = assert_stalled_clients_dropped_without_harm(host, WS_PATH, LISTEN)
    print(json.dumps({"stalled_clients": figures}))
