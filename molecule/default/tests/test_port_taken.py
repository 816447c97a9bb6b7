"""The sidecar's serving loop failing at start (its port held by another
program) ends its process, and mod_wsgi starts it again until it can
listen: the dashboard is never left up but dead. Three trials per host."""

import time

import pytest
from conftest import status

# A squatter that listens (SO_REUSEADDR, as servers do) holds the port even
# while an old connection of the sidecar's lingers in TIME_WAIT on it (the
# readiness wait leaves Apache one pooled), so the sidecar cannot bind. It
# resets every connection at once, so Apache's request fails instead of
# hanging on a listener that never answers.
SQUATTER = """
import socket, struct
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8765))
s.listen(16)
s.settimeout(60)
try:
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
except TimeoutError:
    pass
"""


def deaths(host) -> int:
    return int(host.run("grep -c 'serving loop died' /var/log/apache2/error.log").stdout or 0)


@pytest.mark.parametrize("trial", range(3))
def test_sidecar_restarts_until_its_port_is_free(host, probe, trial):
    assert host.run("systemctl stop apache2").rc == 0
    squat = host.run(
        "setsid nohup python3 -c %s mws-squatter >/dev/null 2>&1 < /dev/null &", SQUATTER
    )
    assert squat.rc == 0
    try:
        time.sleep(0.5)
        before = deaths(host)
        assert host.run("systemctl start apache2").rc == 0
        time.sleep(4)
        # Not serving, and not pretending to: each attempt died and was retried.
        # Apache answers 502 when the squatter resets the connection, 503 once
        # it has put the backend in its error state for that.
        assert status(probe.ws("/metrics/ws")) in (502, 503)
        assert deaths(host) - before >= 2
    finally:
        host.run("pkill -f mws-squatter")
    started = time.monotonic()
    probe.ws_eventually("/metrics/ws", within=5)
    assert time.monotonic() - started < 5
