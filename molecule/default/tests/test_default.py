"""The default deployment as a user would check it, from inside each container:
loopback TCP listener, sidecar mounted at /metrics/, demo WSGI app at /."""

import json
import time

import pytest
from conftest import enabled_apache_config, staged_probe, wsgi_daemon_groups

SIDECAR_GROUP = "metrics-sidecar"


@pytest.mark.parametrize(
    "package",
    ["apache2", "libapache2-mod-wsgi-py3", "python3-aiohttp", "python3-prometheus-client"],
)
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


def test_the_applications_group_has_mod_wsgi_express_settings(host):
    """Timeouts and a UTF-8 locale as mod_wsgi-express gives every application."""
    groups = wsgi_daemon_groups(enabled_apache_config(host))
    options = groups["wsgi-app"].split()
    for option in (
        "request-timeout=60",
        "queue-timeout=45",
        "socket-timeout=60",
        "connect-timeout=15",
        "graceful-timeout=15",
        "startup-timeout=15",
        "shutdown-timeout=5",
        "lang=C.UTF-8",
        "locale=C.UTF-8",
    ):
        assert option in options, (option, options)
    assert not any(o.startswith("header-buffer-size=") for o in options)


def test_sidecar_imported_into_its_group(host):
    config = enabled_apache_config(host).replace("\\\n", " ")
    imports = [line.split() for line in config.splitlines() if line.startswith("WSGIImportScript")]
    assert len(imports) == 1
    assert f"process-group={SIDECAR_GROUP}" in imports[0]
    assert "application-group=%{GLOBAL}" in imports[0]


def test_sidecar_daemon_process_runs(host):
    # mod_wsgi names daemon processes after their group (display-name),
    # cut to the length of Apache's own argv[0], "/usr/sbin/apache2".
    title = f"(wsgi:{SIDECAR_GROUP})"[: len("/usr/sbin/apache2")]
    names = [p.args for p in host.process.filter(user="www-data")]
    assert sum(args.startswith(title) for args in names) == 1, names


def test_query_strings_of_busy_requests_are_hidden_on_the_dashboard(host, probe):
    # A held WebSocket is a busy worker whose request line the dashboard lists.
    host.run_test(
        "(timeout 30 python3 %s ws '/metrics/ws?token=s3cr3t-in-a-query' --frames 1000"
        " --timeout 25 >/dev/null 2>&1 &)",
        staged_probe(host),
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            frames = probe.ws("/metrics/ws", frames=2)["frames"]
            text = json.dumps(frames)
            if "?[redacted]" in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.5)
        assert "s3cr3t" not in text
        requests = [w["request"] for f in frames for w in f["data"].get("workers", [])]
        assert "GET /metrics/ws?[redacted] HTTP/1.1" in requests
    finally:
        host.run("pkill -f 'token=s3cr3t-in-a-query'")
