"""Express mode: the server is mod_wsgi-express's own, generated with the
options the role derives from its variables and run by the role's systemd
unit, with Debian's apache2 out of the way. Unix-socket and TCP listeners
both work, a configuration the server rejects is never loaded, and
switching the host to system mode and back by one variable leaves nothing
of the other mode behind.

The switches happen once for all hosts, one after another (a session
fixture); what each host looked like after each is recorded then and
checked per host."""

import pytest
from conftest import Probe, converge, run_playbook, scenario_host, scenario_hosts, status

SERVICE = "mod_wsgi_ws_sidecar-express"
UNIT = f"/etc/systemd/system/{SERVICE}.service"
ROOT = "/var/lib/mod_wsgi_ws_sidecar/express"
LOGS = "/var/log/mod_wsgi_ws_sidecar"
VENV = "/opt/mod_wsgi_ws_sidecar/venv"
ARGS = "/etc/mod_wsgi_ws_sidecar/express.args"
INCLUDE = "/etc/mod_wsgi_ws_sidecar/express.conf"
SOCKET = "/run/mod_wsgi_ws_sidecar/metrics-sidecar/sidecar.sock"
# What express mode alone owns, and what system mode alone writes.
EXPRESS_ONLY = [UNIT, ROOT, LOGS, VENV, ARGS, INCLUDE]
SYSTEM_ONLY = [
    "/etc/apache2/sites-enabled/mod_wsgi_ws_sidecar.conf",
    "/etc/apache2/sites-available/mod_wsgi_ws_sidecar.conf",
    "/etc/apache2/conf-enabled/mod_wsgi_ws_sidecar_capacity.conf",
    "/etc/apache2/conf-available/mod_wsgi_ws_sidecar_capacity.conf",
    "/etc/apache2/mods-available/mod_wsgi_ws_sidecar_wsgi.load",
    "/etc/systemd/system/apache2.service.d",
]
# The generated server and the role's inputs: equal after a round trip.
EXPRESS_FILES = f"{ROOT}/httpd.conf {ROOT}/apachectl {ROOT}/handler.wsgi {UNIT} {ARGS} {INCLUDE}"


def generated(host, name: str) -> str:
    return host.file(f"{ROOT}/{name}").content_string


def services(host) -> dict:
    """(active, enabled) of each mode's unit; a unit that does not exist is neither."""
    return {
        name: (
            host.run("systemctl is-active %s", name).stdout.strip() == "active",
            host.run("systemctl is-enabled %s", name).stdout.strip() == "enabled",
        )
        for name in (SERVICE, "apache2")
    }


def existing(host, paths: list[str]) -> list[str]:
    return [path for path in paths if host.file(path).exists]


def test_debians_apache2_is_stopped_and_disabled(host):
    assert services(host) == {SERVICE: (True, True), "apache2": (False, False)}
    # Port 80 belongs to the express server's Apache.
    owners = host.check_output("ss -Hltnp 'sport = :80'")
    main_pid = host.check_output(f"systemctl show -p MainPID --value {SERVICE}")
    assert f"pid={main_pid}," in owners, owners


def test_server_is_generated_by_setup_server(host):
    args = host.file(ARGS).content_string.splitlines()
    for option in (
        ["--server-metrics"],
        ["--service-script", "metrics-sidecar", "/etc/mod_wsgi_ws_sidecar/metrics-sidecar.py"],
        ["--proxy-mount-point", "/metrics/", "http://127.0.0.1:8765/"],
        ["--user", "www-data"],
        ["--port", "80"],
        ["--include-file", INCLUDE],
        ["--request-timeout", "60"],
        ["--queue-timeout", "45"],
        ["--locale", "C.UTF-8"],
    ):
        assert any(args[i : i + len(option)] == option for i in range(len(args))), option
    config = generated(host, "httpd.conf")
    # The application's group as mod_wsgi-express writes it from them.
    joined = config.replace("\\\n", " ").splitlines()
    (app,) = [
        line
        for line in joined
        if line.startswith("WSGIDaemonProcess") and "service:" not in line and "processes=" in line
    ]
    assert "request-timeout=60" in app and "locale='C.UTF-8'" in app, app
    assert "ProxyPass '/metrics/' 'http://127.0.0.1:8765/' upgrade=websocket" in config
    assert "WSGIDaemonProcess 'service:metrics-sidecar'" in config
    assert f"Include '{INCLUDE}'" in config


def test_front_end_is_sized_for_the_planned_load(host):
    # 150 HTTP requests plus the dashboard's 500 WebSockets, each holding a thread.
    config = generated(host, "httpd.conf")
    event = config.split("<IfModule mpm_event_module>", 1)[1].split("<IfDefine ONE_PROCESS>", 1)[0]
    (max_clients,) = [
        int(line.split()[1]) for line in event.splitlines() if line.startswith("MaxClients")
    ]
    assert max_clients >= 650
    limit = host.check_output(f"systemctl show -p LimitNOFILE --value {SERVICE}")
    assert int(limit) > 1024


def test_sidecar_runs_in_the_venv_as_a_service_script(host):
    pid = host.check_output("pgrep -u www-data -f '^.wsgi:service:metrics'")
    maps = host.file(f"/proc/{pid}/maps").content_string
    assert f"{VENV}/lib/python3." in maps
    assert "site-packages/aiohttp/" in maps


def observe(name: str) -> dict:
    """What one host serves and holds, once its new sidecar answers."""
    host = scenario_host(name)
    frames = Probe(host).ws_eventually("/metrics/ws", within=30)["frames"]
    return {
        "frames": frames,
        "app": Probe(host).http("/")["body"],
        "tcp": [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()],
        "socket": host.file(SOCKET).is_socket,
        # Root reaches either listener; without the secret Apache adds, it is refused.
        "direct_without_secret": status(
            Probe(host).http(
                "/", **({"unix": SOCKET} if host.file(SOCKET).is_socket else {"port": 8765})
            )
        ),
        "services": services(host),
        "unit_known": host.run("systemctl cat %s", SERVICE).succeeded,
        "express_only": existing(host, EXPRESS_ONLY),
        "system_only": existing(host, SYSTEM_ONLY),
        "httpd_conf": generated(host, "httpd.conf") if host.file(ROOT).exists else "",
        "express_files": host.run(f"md5sum {EXPRESS_FILES}").stdout,
    }


# One journey for all hosts, session-scoped like check_mode_changes (a test
# that asks for both in this order gets the scenario's one --check --diff run
# after it; test_shared.py's check-mode test, which runs later, reads the
# same run): the dashboard moved to a unix socket; from there, system mode
# by one variable; then the playbook's own variables, express on TCP again.
@pytest.fixture(scope="session")
def switches() -> dict:
    before = {host.backend.host: observe(host.backend.host) for host in scenario_hosts()}
    unix = {"name": "metrics-sidecar", "mount": "/metrics/", "listener": "unix"}
    on_unix = {name: observe(name) for name in converge({"mod_wsgi_ws_sidecar_sidecars": [unix]})}
    on_system = {name: observe(name) for name in converge({"mod_wsgi_ws_sidecar_mode": "system"})}
    back = {name: observe(name) for name in converge()}
    return {"before": before, "unix": on_unix, "system": on_system, "back": back}


def test_unix_socket_and_tcp_listeners_both_work(host, switches):
    unix, tcp = (switches[moment][host.backend.host] for moment in ("unix", "back"))
    assert unix["socket"]
    assert f"'unix:{SOCKET}|http://localhost/' upgrade=websocket" in unix["httpd_conf"]
    assert not any(address.endswith(":8765") for address in unix["tcp"])
    assert unix["frames"][0]["data"]["type"] == "snapshot"
    assert unix["direct_without_secret"] == tcp["direct_without_secret"] == 403
    assert not tcp["socket"]
    assert "127.0.0.1:8765" in tcp["tcp"]
    assert tcp["frames"][0]["data"]["type"] == "snapshot"


@pytest.fixture(scope="module")
def rejected_configuration() -> dict:
    """A directive Apache does not know, given to every host: the run, and
    each host's generated server and MainPID before and after."""
    hosts = {host.backend.host: host for host in scenario_hosts()}

    def state(host):
        pid = host.check_output(f"systemctl show -p MainPID --value {SERVICE}")
        return host.run(f"md5sum {EXPRESS_FILES}").stdout, pid

    before = {name: state(host) for name, host in hosts.items()}
    run = run_playbook({"mod_wsgi_ws_sidecar_extra_directives": ["NoSuchDirective on"]})
    after = {name: state(host) for name, host in hosts.items()}
    return {"run": run, "before": before, "after": after}


def test_a_configuration_apache_rejects_is_never_loaded(host, probe, rejected_configuration):
    run = rejected_configuration["run"]
    output = run.messages()
    assert run.returncode != 0
    assert "Apache rejects the configuration" in output
    assert "NoSuchDirective" in output
    name = host.backend.host
    # The generated server, the role's inputs and the running server are as before.
    assert rejected_configuration["after"][name] == rejected_configuration["before"][name]
    assert not host.file(f"{ROOT}.previous").exists
    assert probe.ws("/metrics/ws")["frames"][0]["data"]["type"] == "snapshot"


def test_switching_to_system_mode_and_back_leaves_nothing_stale(host, switches, check_mode_changes):
    name = host.backend.host
    before, on_system, back = (switches[moment][name] for moment in ("before", "system", "back"))
    # System mode: Debian's apache2 serves, Debian's Python runs the
    # application, and nothing of express mode is left.
    assert on_system["services"] == {SERVICE: (False, False), "apache2": (True, True)}
    assert on_system["express_only"] == []
    assert on_system["system_only"] == SYSTEM_ONLY[:4] + SYSTEM_ONLY[5:]
    assert " in /usr\n" in on_system["app"]
    assert on_system["frames"][0]["data"]["type"] == "snapshot"
    assert not on_system["unit_known"]
    # Express again: the same server as before, and nothing of system mode.
    assert back["services"] == before["services"]
    assert back["express_only"] == EXPRESS_ONLY
    assert back["system_only"] == []
    assert back["express_files"] == before["express_files"]
    assert back["frames"][0]["data"]["type"] == "snapshot"
    # And then nothing to change.
    assert check_mode_changes[name] == []
