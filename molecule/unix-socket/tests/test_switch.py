"""Switching a deployed sidecar from the unix socket to TCP and back is one
variable and a re-run, and leaves no stale listener, socket or config.

The switches happen once for all hosts (a session fixture); what each host
looked like after each switch is recorded then and checked per host here.
"""

import pytest
from conftest import ROLE, Probe, converge, enabled_apache_config, scenario_host

SOCKET_DIR = "/run/mod_wsgi_ws_sidecar/metrics-sidecar"
TMPFILES = "/etc/tmpfiles.d/mod_wsgi_ws_sidecar.conf"
METRICS_DIR = "/run/mod_wsgi_ws_sidecar_metrics"
ON_TCP = {
    "mod_wsgi_ws_sidecar_sidecars": [
        {"name": "metrics-sidecar", "mount": "/metrics/", "listener": "tcp", "port": 8765}
    ]
}


def observe(name: str) -> dict:
    host = scenario_host(name)
    # First wait for the new sidecar to answer: by then the reload is over.
    frames = Probe(host).ws_eventually("/metrics/ws", within=20)["frames"]
    return {
        "frames": frames,
        "tcp": [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()],
        "unix": host.check_output("ss -Hlx"),
        "socket_dir": host.file(SOCKET_DIR).exists,
        "run_dir": host.file("/run/mod_wsgi_ws_sidecar").exists,
        "tmpfiles": host.file(TMPFILES).content_string if host.file(TMPFILES).exists else "",
        "config": enabled_apache_config(host),
    }


@pytest.fixture(scope="session")
def switches() -> dict:
    to_tcp = converge(ON_TCP)
    on_tcp = {name: observe(name) for name in to_tcp}
    back = converge()
    on_unix = {name: observe(name) for name in back}
    return {"to_tcp": to_tcp, "on_tcp": on_tcp, "back": back, "on_unix": on_unix}


def test_switch_to_tcp_leaves_no_socket_behind(host, switches):
    name = host.backend.host
    assert f"{ROLE} : Reload Apache (mod_wsgi_ws_sidecar)" in switches["to_tcp"][name]
    seen = switches["on_tcp"][name]
    assert "127.0.0.1:8765" in seen["tcp"]
    assert "sidecar.sock" not in seen["unix"]
    assert not seen["socket_dir"]
    assert not seen["run_dir"]
    # Boot recreates the dashboard's counters directory only.
    assert f"d {METRICS_DIR} 0700 www-data www-data -" in seen["tmpfiles"]
    assert "/run/mod_wsgi_ws_sidecar " not in seen["tmpfiles"]
    assert "unix:" not in seen["config"]
    assert '"http://127.0.0.1:8765/" upgrade=websocket' in seen["config"]
    assert seen["frames"][0]["data"]["type"] == "snapshot"


def test_switch_back_to_unix_leaves_no_tcp_listener(host, switches):
    name = host.backend.host
    assert f"{ROLE} : Reload Apache (mod_wsgi_ws_sidecar)" in switches["back"][name]
    seen = switches["on_unix"][name]
    assert not any(address.endswith(":8765") for address in seen["tcp"]), seen["tcp"]
    assert f"{SOCKET_DIR}/sidecar.sock" in seen["unix"]
    assert seen["socket_dir"]
    assert f"d {SOCKET_DIR} 2750 www-data www-data -" in seen["tmpfiles"]
    assert f"d {METRICS_DIR} 0700 www-data www-data -" in seen["tmpfiles"]
    assert "127.0.0.1:8765" not in seen["config"]
    assert seen["frames"][0]["data"]["type"] == "snapshot"


def test_check_mode_reports_no_change_on_a_converged_host(host, switches, check_mode_changes):
    # Asked for after the switches (both session fixtures, in this order): the
    # scenario's one --check --diff run finds nothing to change after them.
    assert check_mode_changes[host.backend.host] == []
