"""A sidecar whose unix socket file is removed (a tmp cleaner, an operator's
rm) cannot be reached by Apache any more: it exits, mod_wsgi starts a new
one, and the new one binds a fresh socket. Ten times in a row per host,
each removal and the frame through Apache after it timed inside the
container (molecule/faults.py), not across `docker exec` round trips."""

import json

from faults import assert_every_trial_back, trials

SOCKET = "/run/mod_wsgi_ws_sidecar/metrics-sidecar/sidecar.sock"
LISTENER = f"unix:{SOCKET}"
RECOVERY = 5.0  # seconds from the removal to a frame from the new sidecar


def test_removed_socket_brings_a_new_sidecar_within_5_s(host):
    results = trials(host, "unlink", 10, "/metrics/ws", LISTENER)
    # Each time a frame through Apache within 5 s, from a new process (one, a
    # child of Apache's) on a fresh socket, nothing else in its directory.
    figures = assert_every_trial_back(results, LISTENER, within=RECOVERY)
    assert len(set(figures["pids"])) == 10, figures["pids"]
    assert host.file(SOCKET).is_socket
    print(json.dumps({"socket_removed": figures}))
