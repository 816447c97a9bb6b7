"""Only Apache may reach a sidecar: each sidecar's secret, kept on the host,
sent by Apache with every request it proxies, and never shown. A copy
changed by hand is put back by the next run, and the sidecar follows.
(A second local user's refusal at the listener: molecule/shared_tests.py.)"""

import json
import time

import pytest
from conftest import Probe, run_playbook, scenario_hosts, status

CONF_DIR = "/etc/mod_wsgi_ws_sidecar"
STORED = f"{CONF_DIR}/metrics-sidecar.secret"
SETTINGS = f"{CONF_DIR}/metrics-sidecar.json"
APACHE_COPY = f"{CONF_DIR}/apache-secrets.conf"
SITE = "/etc/apache2/sites-available/mod_wsgi_ws_sidecar.conf"
WRITE_SETTINGS = (
    "mod_wsgi_ws_sidecar.apache.mod_wsgi_ws_sidecar : Write each sidecar's secret and settings,"
    " and Apache's copy of the secrets"
)
# What an operator's slip writes into the sidecar's copy.
BY_HAND = "h" * 43


def stored(host) -> str:
    return host.file(STORED).content_string.strip()


def upgrade_status_becomes(host, expected: int, within: float) -> int:
    """The WebSocket upgrade's status through Apache, once it is `expected`
    (the reload restarts the sidecar) or when time is up."""
    deadline = time.monotonic() + within
    while (seen := status(Probe(host).ws("/metrics/ws", timeout=3))) != expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return seen


def test_the_secret_is_kept_for_root_and_the_daemons_group_only(host):
    secret = stored(host)
    assert len(secret) == 43
    for path, group, mode in (
        (STORED, "root", 0o600),
        (APACHE_COPY, "root", 0o600),
        (SETTINGS, "www-data", 0o640),
    ):
        found = host.file(path)
        assert (found.user, found.group, found.mode) == ("root", group, mode), path
    assert json.loads(host.file(SETTINGS).content_string)["secret"] == secret
    assert (
        f"Define MOD_WSGI_WS_SIDECAR_SECRET_metrics-sidecar {secret}\n"
        in host.file(APACHE_COPY).content_string
    )
    # The world-readable site names the secret, never spells it.
    site = host.file(SITE)
    assert site.mode == 0o644
    assert secret not in site.content_string
    assert 'RequestHeader set X-Sidecar-Secret "${MOD_WSGI_WS_SIDECAR_SECRET_metrics-sidecar}"' in (
        site.content_string
    )


def test_a_client_cannot_pass_its_own_secret_through_apache(probe):
    # Apache replaces the header, so a guess changes nothing either way.
    answer = probe.ws("/metrics/ws", header=["X-Sidecar-Secret: guess"])
    assert answer["handshake"].startswith("HTTP/1.1 101")


@pytest.fixture(scope="module")
def changed_by_hand() -> dict:
    """On every host, the sidecar's copy of its secret overwritten by hand
    and loaded; then a --check --diff run and a -vvv run of the converge."""
    hosts = scenario_hosts()
    before = {}
    for host in hosts:
        secret = stored(host)
        edit = (
            "import json, sys; p = sys.argv[1]; d = json.load(open(p)); d['secret'] = sys.argv[2];"
            " open(p, 'w').write(json.dumps(d))"
        )
        assert host.run("python3 -c %s %s %s", edit, SETTINGS, BY_HAND).rc == 0
        assert host.run("systemctl reload apache2").rc == 0
        refused = upgrade_status_becomes(host, 403, within=15)
        before[host.backend.host] = {"secret": secret, "refused": refused}
    check = run_playbook(check=True)
    verbose = run_playbook(verbose=True)
    after = {}
    for host in hosts:
        after[host.backend.host] = {
            "secret": stored(host),
            "settings": json.loads(host.file(SETTINGS).content_string)["secret"],
            "frames": Probe(host).ws("/metrics/ws", frames=1)["frames"],
        }
    return {"before": before, "check": check, "verbose": verbose, "after": after}


def test_a_secret_changed_by_hand_breaks_only_until_the_next_run(host, changed_by_hand):
    name = host.backend.host
    before, after = changed_by_hand["before"][name], changed_by_hand["after"][name]
    # Apache still sends the stored secret, which the sidecar no longer expects.
    assert before["refused"] == 403
    assert after["secret"] == after["settings"] == before["secret"]
    assert after["frames"][0]["data"]["type"] == "snapshot"


def test_the_runs_predict_and_make_the_repair(changed_by_hand):
    check, verbose = changed_by_hand["check"], changed_by_hand["verbose"]
    assert check.returncode == 0, check.stdout[-3000:]
    assert verbose.returncode == 0, verbose.stdout[-3000:]
    for run in (check, verbose):
        changed = run.changed()
        for host in scenario_hosts():
            assert WRITE_SETTINGS in changed[host.backend.host], changed


def test_no_output_shows_a_secret(changed_by_hand):
    secrets = [BY_HAND] + [seen["secret"] for seen in changed_by_hand["before"].values()]
    for run in (changed_by_hand["check"], changed_by_hand["verbose"]):
        output = run.stdout + run.stderr
        for secret in secrets:
            assert secret not in output


def test_the_error_log_never_holds_a_secret(host, changed_by_hand):
    log = host.file("/var/log/apache2/error.log").content_string
    assert BY_HAND not in log
    assert stored(host) not in log


@pytest.fixture(scope="module")
def rotated(changed_by_hand) -> dict:
    """Every host's secret before and after a run asked to rotate them, run
    after the repair above."""
    hosts = scenario_hosts()
    old = {host.backend.host: stored(host) for host in hosts}
    run = run_playbook({"mod_wsgi_ws_sidecar_rotate_secrets": True})
    assert run.returncode == 0, run.stdout[-3000:]
    return {"old": old, "output": run.stdout + run.stderr}


def test_rotation_replaces_the_secret_and_the_sidecar_follows(host, rotated):
    old, new = rotated["old"][host.backend.host], stored(host)
    assert new != old and len(new) == 43
    assert old not in rotated["output"] and new not in rotated["output"]
    assert json.loads(host.file(SETTINGS).content_string)["secret"] == new
    assert status(Probe(host).ws("/metrics/ws")) == 101
