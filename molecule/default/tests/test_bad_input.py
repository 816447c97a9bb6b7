"""Invalid variables fail the run before anything on the host changes, with
a message naming the variable. Each case is one playbook run against every
host of the scenario; the role's files, Apache's configuration and Apache's
main process must be exactly as before."""

import re
import time

import pytest
from conftest import role_files_state, run_playbook, scenario_hosts

SIDECAR = {"name": "metrics-sidecar", "mount": "/metrics/", "port": 8765}
SECRET = "never-printed-" + "x" * 70  # 84 characters: over bcrypt's 72


def sidecars(*items: dict) -> dict:
    return {"mod_wsgi_ws_sidecar_sidecars": list(items)}


# (case id, extra vars, words the failure message must contain)
CASES = [
    ("port-out-of-range", sidecars({**SIDECAR, "port": 70000}), ["sidecars[0].port"]),
    ("mount-without-slash", sidecars({**SIDECAR, "mount": "metrics/"}), ["sidecars[0].mount"]),
    (
        "relative-socket",
        sidecars({**SIDECAR, "listener": "unix", "socket": "run/m.sock"}),
        ["sidecars[0].socket"],
    ),
    ("unknown-listener", sidecars({**SIDECAR, "listener": "udp"}), ["listener", "udp"]),
    (
        "two-sidecars-one-port",
        sidecars(SIDECAR, {"name": "other", "mount": "/other/", "port": 8765}),
        ["mod_wsgi_ws_sidecar_sidecars", "port"],
    ),
    (
        "two-sidecars-one-mount",
        sidecars(SIDECAR, {"name": "other", "mount": "/metrics/", "port": 8766}),
        ["mod_wsgi_ws_sidecar_sidecars", "mount"],
    ),
    ("non-boolean-flag", {"mod_wsgi_ws_sidecar_tls": "maybe"}, ["mod_wsgi_ws_sidecar_tls"]),
    (
        "missing-certificate",
        {
            "mod_wsgi_ws_sidecar_tls": True,
            "mod_wsgi_ws_sidecar_tls_certificate": "/etc/ssl/certs/missing.pem",
            "mod_wsgi_ws_sidecar_tls_certificate_key": "/etc/ssl/private/missing.key",
        },
        ["mod_wsgi_ws_sidecar_tls_certificate"],
    ),
    (
        "capacity-beyond-apache",
        {"mod_wsgi_ws_sidecar_capacity_websockets": 20_000_000},
        ["mod_wsgi_ws_sidecar_capacity_websockets"],
    ),
    ("zero-http-capacity", {"mod_wsgi_ws_sidecar_capacity_http": 0}, ["capacity_http"]),
    ("bad-allow-list", {"mod_wsgi_ws_sidecar_allow_from": ["10.0.0.0/33"]}, ["allow_from"]),
    (
        "password-too-long",
        {"mod_wsgi_ws_sidecar_auth_users": [{"name": "ops", "password": SECRET}]},
        ["mod_wsgi_ws_sidecar_auth_users"],
    ),
    (
        "internal-host-on-port-80",
        {"mod_wsgi_ws_sidecar_internal_listen": "127.0.0.1:80"},
        ["mod_wsgi_ws_sidecar_internal_listen"],
    ),
    (
        "internal-host-address-not-on-host",
        {"mod_wsgi_ws_sidecar_internal_listen": "192.0.2.1:8081"},
        ["mod_wsgi_ws_sidecar_internal_listen", "192.0.2.1"],
    ),
    (
        "internal-sidecar-without-internal-host",
        sidecars({**SIDECAR, "internal": True}),
        ["sidecars[0].internal", "mod_wsgi_ws_sidecar_internal_listen"],
    ),
    (
        "multi-line-extra-directive",
        {"mod_wsgi_ws_sidecar_extra_directives": ["Header set X-A 1\nInclude /etc/shadow"]},
        ["mod_wsgi_ws_sidecar_extra_directives"],
    ),
    ("origin-without-scheme", sidecars({**SIDECAR, "origins": ["evil.example"]}), ["origins"]),
    ("app-mount-trailing-slash", {"mod_wsgi_ws_sidecar_app_mount": "/app/"}, ["app_mount"]),
    ("sidecar-name", sidecars({**SIDECAR, "name": "1metrics"}), ["sidecars[0].name"]),
    ("zero-poll-interval", sidecars({**SIDECAR, "poll_interval": 0}), ["sidecars[0]"]),
    ("relative-venv", {"mod_wsgi_ws_sidecar_venv": "srv/venv"}, ["mod_wsgi_ws_sidecar_venv"]),
    (
        "venv-is-a-directory-but-no-venv",
        {"mod_wsgi_ws_sidecar_venv": "/usr/local/lib/mod_wsgi_ws_sidecar"},
        ["mod_wsgi_ws_sidecar_venv", "bin/python"],
    ),
    (
        "pip-option-as-requirement",
        {
            "mod_wsgi_ws_sidecar_venv": "/srv/venv",
            "mod_wsgi_ws_sidecar_python_requirements": ["--index-url=http://elsewhere.example"],
        },
        ["mod_wsgi_ws_sidecar_python_requirements"],
    ),
    (
        "missing-pip-ca-bundle",
        {"mod_wsgi_ws_sidecar_pip_ca_bundle": "/etc/ssl/missing.crt"},
        ["mod_wsgi_ws_sidecar_pip_ca_bundle"],
    ),
    (
        "pypi-mod-wsgi-without-venv",
        {"mod_wsgi_ws_sidecar_mod_wsgi_source": "pypi"},
        ["mod_wsgi_ws_sidecar_mod_wsgi_source"],
    ),
    ("unknown-mode", {"mod_wsgi_ws_sidecar_mode": "nginx"}, ["mod_wsgi_ws_sidecar_mode"]),
    ("mount-climbing-out", sidecars({**SIDECAR, "mount": "/../etc/"}), ["sidecars[0].mount"]),
    ("mount-with-dot-segment", sidecars({**SIDECAR, "mount": "/./m/"}), ["sidecars[0].mount"]),
    (
        "sidecar-on-apaches-own-port",
        sidecars({**SIDECAR, "port": 80}),
        ["sidecars[0].port", "Apache itself listens on"],
    ),
    (
        # Refused by the internal host's own check, which runs first.
        "sidecar-on-the-internal-hosts-port",
        {
            "mod_wsgi_ws_sidecar_internal_listen": "127.0.0.1:8081",
            **sidecars({**SIDECAR, "port": 8081}),
        },
        ["mod_wsgi_ws_sidecar_internal_listen", "the sidecars' own"],
    ),
    (
        "user-script-not-on-host",
        sidecars(
            SIDECAR, {"name": "echo", "mount": "/ws/", "port": 8770, "script": "/srv/none.py"}
        ),
        ["sidecars[1].script", "/srv/none.py"],
    ),
]


@pytest.fixture(scope="module")
def hosts():
    return scenario_hosts()


@pytest.fixture(scope="module")
def state_before(hosts):
    return {host.backend.hostname: role_files_state(host) for host in hosts}


@pytest.mark.parametrize(("extra_vars", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_before_any_change(hosts, state_before, extra_vars, words):
    run = run_playbook(extra_vars)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-2000:]
    for word in words:
        assert word in output, f"{word!r} not in: {output[-2000:]}"
    assert SECRET not in output
    recap = output[output.rindex("PLAY RECAP") :]
    assert re.findall(r"changed=(\d+)", recap) == ["0"] * len(hosts), recap
    for host in hosts:
        assert role_files_state(host) == state_before[host.backend.hostname]


# Listens on 127.0.0.1:8766 for at most a minute; its command line names it.
LISTENER = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 8766)); s.listen();"
    " time.sleep(60)"
)


def test_a_port_another_program_listens_on_fails_before_any_change(hosts, state_before):
    for host in hosts:
        started = host.run(
            "setsid nohup python3 -c %s mws-listener >/dev/null 2>&1 < /dev/null &", LISTENER
        )
        assert started.rc == 0
    try:
        for host in hosts:
            deadline = time.monotonic() + 5
            while "127.0.0.1:8766" not in host.check_output("ss -Hltn"):
                assert time.monotonic() < deadline, "the listener did not start"
                time.sleep(0.2)
        run = run_playbook(sidecars({**SIDECAR, "port": 8766}))
    finally:
        for host in hosts:
            host.run("pkill -f mws-listener")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-2000:]
    assert "mod_wsgi_ws_sidecar_sidecars[0].port 8766" in output, output[-2000:]
    assert "mws-listener (pid " in output
    recap = output[output.rindex("PLAY RECAP") :]
    assert re.findall(r"changed=(\d+)", recap) == ["0"] * len(hosts), recap
    for host in hosts:
        assert role_files_state(host) == state_before[host.backend.hostname]
