"""Invalid variables fail the run before anything on the host changes, with
a message naming the variable. Each case is one playbook run against every
host of the scenario; the role's files, Apache's configuration and Apache's
main process must be exactly as before. The rules themselves, one row each,
are the plan's unit tests (tests/test_plan.py)."""

import time

import pytest
from conftest import role_files_state, run_playbook, scenario_hosts

SIDECAR = {"name": "metrics-sidecar", "mount": "/metrics/", "port": 8765}
SECRET = "never-printed-" + "x" * 70  # 84 characters: over bcrypt's 72


def sidecars(*items: dict) -> dict:
    return {"mod_wsgi_ws_sidecar_sidecars": list(items)}


# (case id, extra vars, words the failure message must contain): one case of
# each kind of check, each reporting all its problems in one run. Every rule
# of the plan has its own row in tests/test_plan.py; these prove on real
# hosts that a refusal comes before any change.
CASES = [
    # The argument spec.
    ("non-boolean-flag", {"mod_wsgi_ws_sidecar_tls": "maybe"}, ["mod_wsgi_ws_sidecar_tls"]),
    # The plan, all problems at once; the password is never printed.
    (
        "plan-problems",
        {
            **sidecars({**SIDECAR, "port": 70000}),
            "mod_wsgi_ws_sidecar_auth_users": [{"name": "ops", "password": SECRET}],
            "mod_wsgi_ws_sidecar_static_files": [{"url": "/metrics/", "directory": "/srv/s"}],
        },
        ["sidecars[0].port", "mod_wsgi_ws_sidecar_auth_users", "static_files[0].url"],
    ),
    # Every check that needs the host, all problems at once: a missing
    # certificate, an internal address the host lacks, a directory that is
    # not a virtual environment, a missing pip CA bundle, a user's script
    # not on the host, a static files directory not there.
    (
        "host-problems",
        {
            "mod_wsgi_ws_sidecar_tls": True,
            "mod_wsgi_ws_sidecar_tls_certificate": "/etc/ssl/certs/missing.pem",
            "mod_wsgi_ws_sidecar_tls_certificate_key": "/etc/ssl/private/missing.key",
            "mod_wsgi_ws_sidecar_internal_listen": "192.0.2.1:8081",
            "mod_wsgi_ws_sidecar_venv": "/usr/local/lib/mod_wsgi_ws_sidecar",
            "mod_wsgi_ws_sidecar_pip_ca_bundle": "/etc/ssl/missing.crt",
            **sidecars(
                SIDECAR, {"name": "echo", "mount": "/ws/", "port": 8770, "script": "/srv/none.py"}
            ),
            "mod_wsgi_ws_sidecar_static_files": [{"url": "/static/", "directory": "/srv/none"}],
        },
        [
            "mod_wsgi_ws_sidecar_tls_certificate",
            "mod_wsgi_ws_sidecar_internal_listen",
            "192.0.2.1",
            "mod_wsgi_ws_sidecar_venv",
            "bin/python",
            "mod_wsgi_ws_sidecar_pip_ca_bundle",
            "sidecars[1].script",
            "/srv/none.py",
            "static_files[0].directory: /srv/none is not a directory",
        ],
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
    assert run.returncode != 0, run.output[-2000:]
    said = run.messages()
    for word in words:
        assert word in said, f"{word!r} not in: {said[-2000:]}"
    assert SECRET not in run.output
    assert set(run.recap().values()) == {0}, run.recap()
    assert len(run.recap()) == len(hosts)
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
    assert run.returncode != 0, run.output[-2000:]
    said = run.messages()
    assert "mod_wsgi_ws_sidecar_sidecars[0].port 8766" in said, said[-2000:]
    assert "mws-listener (pid " in said
    assert set(run.recap().values()) == {0}, run.recap()
    assert len(run.recap()) == len(hosts)
    for host in hosts:
        assert role_files_state(host) == state_before[host.backend.hostname]
