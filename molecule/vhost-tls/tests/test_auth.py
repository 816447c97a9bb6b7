"""HTTP basic auth for both dashboards: this machine gets in as it is, any
other address must log in as "operator" (molecule.yml sets the password the
example takes from Vault). 127.0.0.2 stands for a remote client."""

import pytest
from conftest import REMOTE, ROLE, run_playbook, status

CA = "/etc/ssl/certs/example.test.pem"
TLS = {"tls": True, "cafile": CA}
PASSWORD = "correct-horse-battery-staple"
OPERATOR = {"user": f"operator:{PASSWORD}"}
HTPASSWD = "/etc/apache2/mod_wsgi_ws_sidecar.htpasswd"
# The dashboard at its mount, and the one owning ws.example.test.
DASHBOARDS = [({}, "/metrics/"), ({"host_header": "ws.example.test"}, "/")]


@pytest.mark.parametrize(("where", "page"), DASHBOARDS)
def test_anonymous_remote_client_must_log_in(probe, where, page):
    answer = probe.http(page, **where, **REMOTE, **TLS)
    assert answer["status"] == 401
    assert answer["headers"]["WWW-Authenticate"] == 'Basic realm="Apache server metrics"'
    assert status(probe.ws(page + "ws", **where, **REMOTE, **TLS)) == 401


@pytest.mark.parametrize(("where", "page"), DASHBOARDS)
def test_wrong_password_is_refused(probe, where, page):
    wrong = {"user": "operator:wrong-horse"}
    assert probe.http(page, **where, **REMOTE, **TLS, **wrong)["status"] == 401
    assert status(probe.ws(page + "ws", **where, **REMOTE, **TLS, **wrong)) == 401


@pytest.mark.parametrize(("where", "page"), DASHBOARDS)
def test_operator_gets_page_and_websocket_from_anywhere(probe, where, page):
    assert probe.http(page, **where, **REMOTE, **TLS, **OPERATOR)["status"] == 200
    answer = probe.ws(page + "ws", **where, **REMOTE, **TLS, **OPERATOR)
    assert status(answer) == 101
    assert answer["frames"][0]["data"]["type"] == "snapshot"


def test_this_machine_needs_no_password(probe):
    assert probe.http("/metrics/", **TLS)["status"] == 200
    assert status(probe.ws("/metrics/ws", **TLS)) == 101


def test_password_file_holds_a_bcrypt_hash_for_apache_only(host):
    htpasswd = host.file(HTPASSWD)
    assert (htpasswd.user, htpasswd.group, htpasswd.mode) == ("root", "www-data", 0o640)
    assert htpasswd.content_string.startswith("operator:$2y$")
    assert PASSWORD not in htpasswd.content_string


def test_password_never_printed_even_when_it_changes():
    # A changed password rewrites the file; even verbose output hides it.
    new = "tr0ub4dor-and-3"
    run = run_playbook({"dashboard_operator_password": new}, verbose=True)
    assert run.returncode == 0, run.stdout[-2000:]
    for changed in run.changed().values():
        assert f"{ROLE} : Write the password file" in changed, changed
    assert new not in run.stdout + run.stderr
    # Back to the playbook's password; one -vvv run is proof enough.
    back = run_playbook()
    assert back.returncode == 0, back.stdout[-2000:]
    assert PASSWORD not in back.stdout + back.stderr
