"""The default deployment as a user would check it, from inside each container:
loopback TCP listener, sidecar mounted at /metrics/, demo WSGI app at /."""

import pytest
from conftest import enabled_apache_config, wsgi_daemon_groups

SIDECAR_GROUP = "metrics-sidecar"


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


def test_sidecar_daemon_process_runs(host):
    # mod_wsgi names daemon processes after their group (display-name),
    # cut to the length of Apache's own argv[0], "/usr/sbin/apache2".
    title = f"(wsgi:{SIDECAR_GROUP})"[: len("/usr/sbin/apache2")]
    names = [p.args for p in host.process.filter(user="www-data")]
    assert sum(args.startswith(title) for args in names) == 1, names
