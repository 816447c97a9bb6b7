"""A sidecar whose unix socket file is removed (a tmp cleaner, an operator's
rm) cannot be reached by Apache any more: it exits, mod_wsgi starts a new
one, and the new one binds a fresh socket. Ten times in a row per host."""

import time

import pytest

SOCKET = "/run/mod_wsgi_ws_sidecar/metrics-sidecar/sidecar.sock"
# mod_wsgi's process title, cut to the length of "/usr/sbin/apache2".
TITLE = "(wsgi:metrics-sidecar)"[: len("/usr/sbin/apache2")]


def sidecar_pids(host) -> set[int]:
    return {p.pid for p in host.process.filter(user="www-data") if p.args.startswith(TITLE)}


@pytest.mark.parametrize("trial", range(10))
def test_removed_socket_brings_a_new_sidecar_within_5_s(host, probe, trial):
    probe.ws_eventually("/metrics/ws", within=10)
    before = sidecar_pids(host)
    assert len(before) == 1
    assert host.run("rm %s", SOCKET).rc == 0
    started = time.monotonic()
    answer = probe.ws_eventually("/metrics/ws", within=5)
    elapsed = time.monotonic() - started
    assert answer["frames"][0]["data"]["type"] == "snapshot"
    assert elapsed < 5, elapsed
    assert host.file(SOCKET).is_socket
    after = sidecar_pids(host)
    assert len(after) == 1 and after != before
