"""The default deployment as a user would check it, from inside each container:
loopback TCP listener, sidecar mounted at /metrics/, demo WSGI app at /."""

import json
import time

import pytest
from conftest import enabled_apache_config, wsgi_daemon_groups

SIDECAR_GROUP = "metrics-sidecar"
SIDECAR_PORT = 8765


@pytest.mark.parametrize("package", ["apache2", "libapache2-mod-wsgi-py3", "python3-aiohttp"])
def test_package_installed(host, package):
    assert host.package(package).is_installed


def test_needed_modules_enabled(host):
    modules = host.check_output("apache2ctl -M")
    for module in ("proxy_module", "proxy_http_module", "headers_module", "wsgi_module"):
        assert module in modules
    # The WebSocket tunnel is mod_proxy_http's upgrade=websocket, not the
    # old mod_proxy_wstunnel.
    assert "proxy_wstunnel_module" not in modules


def test_config_syntax_ok(host):
    result = host.run("apache2ctl -t")
    assert result.rc == 0, result.stderr
    assert "Syntax OK" in result.stderr


def test_only_the_sidecar_group_reads_the_scoreboard(host):
    groups = wsgi_daemon_groups(enabled_apache_config(host))
    assert SIDECAR_GROUP in groups
    sidecar_options = groups.pop(SIDECAR_GROUP).split()
    assert "threads=0" in sidecar_options
    assert "server-metrics=on" in sidecar_options
    assert groups, "the WSGI application's daemon group is missing"
    for name, options in groups.items():
        assert "server-metrics=on" not in options, name


def test_sidecar_imported_into_its_group(host):
    config = enabled_apache_config(host).replace("\\\n", " ")
    imports = [line.split() for line in config.splitlines() if line.startswith("WSGIImportScript")]
    assert len(imports) == 1
    assert f"process-group={SIDECAR_GROUP}" in imports[0]
    assert "application-group=%{GLOBAL}" in imports[0]


def test_sidecar_listens_on_loopback_only(host):
    listeners = host.check_output("ss -Hltn").splitlines()
    addresses = [line.split()[3] for line in listeners]
    on_port = [address for address in addresses if address.endswith(f":{SIDECAR_PORT}")]
    assert on_port == [f"127.0.0.1:{SIDECAR_PORT}"], listeners


def test_sidecar_daemon_process_runs(host):
    # mod_wsgi names daemon processes after their group (display-name),
    # cut to the length of Apache's own argv[0], "/usr/sbin/apache2".
    title = f"(wsgi:{SIDECAR_GROUP})"[: len("/usr/sbin/apache2")]
    names = [p.args for p in host.process.filter(user="www-data")]
    assert sum(args.startswith(title) for args in names) == 1, names


def test_wsgi_app_answers_at_root(probe):
    answer = probe.http("/")
    assert answer["status"] == 200
    assert "process group: wsgi-app" in answer["body"]


def test_bare_prefix_redirects(probe):
    answer = probe.http("/metrics")
    assert answer["status"] == 301
    assert answer["headers"]["Location"].endswith("/metrics/")


def test_dashboard_carries_the_prefix(probe):
    answer = probe.http("/metrics/")
    assert answer["status"] == 200
    assert answer["headers"]["Content-Type"].startswith("text/html")
    assert 'window.METRICS_BASE = "/metrics"' in answer["body"]


def test_sidecar_direct_has_no_prefix(probe):
    answer = probe.http("/", port=SIDECAR_PORT)
    assert answer["status"] == 200
    assert 'window.METRICS_BASE = ""' in answer["body"]


def test_websocket_through_apache_gets_live_scoreboard(probe):
    answer = probe.ws("/metrics/ws", frames=2, timeout=3)
    assert answer["handshake"].startswith("HTTP/1.1 101")
    first, second = (frame["data"] for frame in answer["frames"])
    assert first["type"] == "snapshot", first
    assert second["seq"] > first["seq"]
    # The Apache worker tunnelling this very WebSocket shows up busy.
    tunnels = [w for w in second["workers"] if "/metrics/ws" in w["request"]]
    assert tunnels, second["workers"]
    assert all(w["code"] == "W" for w in tunnels), tunnels
    assert second["summary"]["busy"] >= 1


def test_check_mode_reports_no_change_on_a_converged_host(host, check_mode_changes):
    assert check_mode_changes[host.backend.host] == []


def test_restart_brings_the_sidecar_back(host, probe):
    host.run_test("systemctl restart apache2")
    started = time.monotonic()
    answer = probe.ws_eventually("/metrics/ws", within=20)
    assert answer["frames"][0]["data"]["type"] == "snapshot"
    print(json.dumps({"sidecar_back_after_s": round(time.monotonic() - started, 2)}))
    # Restarts end the sidecar in an orderly way, never as a crash.
    log = host.file("/var/log/apache2/error.log").content_string
    assert "stopping: Apache is restarting or stopping" in log
    assert "serving loop died" not in log
