"""Taking a sidecar out of the list removes its configuration, its socket
directory and its daemon process; putting it back restores it.

The runs happen once for all hosts (a session fixture); what each host
looked like is recorded then and checked per host here.
"""

import time

import pytest
from conftest import Probe, converge, enabled_apache_config, scenario_host, wsgi_daemon_groups

# The example's dashboard, unchanged; only the echo sidecar goes.
METRICS = {"name": "metrics-sidecar", "mount": "/metrics/", "port": 8765}
METRICS_ONLY = {"mod_wsgi_ws_sidecar_sidecars": [METRICS]}
ECHO_FILES = [
    "/etc/mod_wsgi_ws_sidecar/echo.json",
    "/etc/mod_wsgi_ws_sidecar/echo.py",
    "/etc/mod_wsgi_ws_sidecar/echo.secret",
    "/run/mod_wsgi_ws_sidecar/echo",
]
# mod_wsgi's process title, cut to the length of "/usr/sbin/apache2".
ECHO_TITLE = "(wsgi:echo)"


def echo_processes(host) -> int:
    return sum(p.args.startswith(ECHO_TITLE) for p in host.process.filter(user="www-data"))


def observe(name: str, echo_expected: bool) -> dict:
    host = scenario_host(name)
    probe = Probe(host)
    # The dashboard answering means the reload is over; an old daemon
    # process may still be finishing, for at most mod_wsgi's shutdown-timeout.
    probe.ws_eventually("/metrics/ws", within=20)
    deadline = time.monotonic() + 10
    while (echo_processes(host) == 1) != echo_expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return {
        "files": {path: host.file(path).exists for path in ECHO_FILES},
        # Apache's copy of the secrets names exactly the listed sidecars.
        "secrets_for": sorted(
            line.split()[1].removeprefix("MOD_WSGI_WS_SIDECAR_SECRET_")
            for line in host.file(
                "/etc/mod_wsgi_ws_sidecar/apache-secrets.conf"
            ).content_string.splitlines()
            if line.startswith("Define ")
        ),
        "groups": sorted(wsgi_daemon_groups(enabled_apache_config(host))),
        "echo_processes": echo_processes(host),
        "at_ws": probe.http("/ws/")["body"],
    }


@pytest.fixture(scope="session")
def removal() -> dict:
    removed = converge(METRICS_ONLY)
    without = {name: observe(name, echo_expected=False) for name in removed}
    restored = converge()
    with_echo = {name: observe(name, echo_expected=True) for name in restored}
    return {"without": without, "with": with_echo}


def test_removed_sidecar_leaves_no_config_socket_or_process(host, removal):
    seen = removal["without"][host.backend.host]
    assert seen["files"] == dict.fromkeys(ECHO_FILES, False)
    assert seen["secrets_for"] == ["metrics-sidecar"]
    assert seen["groups"] == ["metrics-sidecar", "wsgi-app"]
    assert seen["echo_processes"] == 0
    # /ws/ is the WSGI application's again.
    assert "process group: wsgi-app" in seen["at_ws"]


def test_sidecar_put_back_serves_again(host, removal):
    seen = removal["with"][host.backend.host]
    assert seen["files"] == dict.fromkeys(ECHO_FILES, True)
    assert seen["secrets_for"] == ["echo", "metrics-sidecar"]
    assert seen["groups"] == ["echo", "metrics-sidecar", "wsgi-app"]
    assert seen["echo_processes"] == 1
    assert '"sidecar":"echo"' in seen["at_ws"].replace(" ", "")
