"""A configuration Apache rejects never reaches the running server: the run
fails, the role's previous files are put back, Apache is not reloaded, and a
client polling the site all along sees no failed request. The user's own
sites and configuration survive every converge untouched. And a run that
ends well means the site serves: right after each converge that reloads
Apache (the good change, and the one back), the very first WebSocket gets
its frames (it used to get a 503 while the sidecars started again)."""

import json
import time
from pathlib import Path

import pytest
from conftest import (
    ROLE,
    ROLE_TOUCHED_DIRS,
    Probe,
    converge,
    converge_run,
    put_file,
    run_playbook,
    scenario_hosts,
    status,
)

POLLER = Path(__file__).resolve().parents[2] / "poller.py"
STAGED = "/opt/mws-test/poller.py"
SITE_FILE = "/etc/apache2/sites-available/mod_wsgi_ws_sidecar.conf"
GOOD = {"mod_wsgi_ws_sidecar_extra_directives": ["Header always set X-Extra-Directive applied"]}
BAD = {"mod_wsgi_ws_sidecar_extra_directives": ["NoSuchDirective on"]}
USER_SITE = """Listen 127.0.0.1:8090
<VirtualHost 127.0.0.1:8090>
    DocumentRoot /var/www/user-site
</VirtualHost>
"""
USER_FILES = [
    "/etc/apache2/sites-available/user-site.conf",
    "/etc/apache2/sites-enabled/user-site.conf",
    "/etc/apache2/conf-available/user-extra.conf",
    "/etc/apache2/conf-enabled/user-extra.conf",
    "/var/www/user-site/index.html",
]


def user_files_state(host) -> str:
    files = " ".join(USER_FILES)
    return host.check_output(f"ls -l {files} && md5sum {files}")


def extra_header(host) -> str | None:
    return Probe(host).http("/")["headers"].get("X-Extra-Directive")


def first_websockets(hosts: list, changed: dict[str, list[str]]) -> dict:
    """At once after a converge: whether it reloaded Apache, and one
    WebSocket per host."""
    return {
        host.backend.host: {
            "reloaded": f"{ROLE} : Reload Apache (mod_wsgi_ws_sidecar)"
            in changed[host.backend.host],
            "first": Probe(host).ws("/metrics/ws", frames=1, timeout=5),
        }
        for host in hosts
    }


def graceful_restarts(host) -> int:
    return int(host.run("grep -c 'Doing graceful restart' /var/log/apache2/error.log").stdout or 0)


@pytest.fixture(scope="module")
def story():
    """The whole story once for every host: a user's site and configuration
    beside the role's, a good change, a rejected one while a client polls,
    and a plain converge back to the playbook's own variables."""
    hosts = scenario_hosts()
    for host in hosts:
        put_file(host, "/etc/apache2/sites-available/user-site.conf", USER_SITE)
        put_file(host, "/etc/apache2/conf-available/user-extra.conf", "ServerSignature Off\n")
        put_file(host, "/var/www/user-site/index.html", "the user's own site\n")
        assert (
            host.run("a2ensite user-site && a2enconf user-extra && systemctl reload apache2").rc
            == 0
        )
        put_file(host, STAGED, POLLER.read_text())
    user_before = {h.backend.hostname: user_files_state(h) for h in hosts}

    good = converge(GOOD)
    first_after_good = first_websockets(hosts, good)
    site_good = {h.backend.hostname: h.file(SITE_FILE).md5sum for h in hosts}
    header_good = {h.backend.hostname: extra_header(h) for h in hosts}
    reloads_before = {h.backend.hostname: graceful_restarts(h) for h in hosts}
    pids_before = {
        h.backend.hostname: h.check_output("systemctl show -p MainPID --value apache2")
        for h in hosts
    }

    for host in hosts:
        host.run("rm -f /opt/mws-test/poll.stop /opt/mws-test/poll.json")
        started = host.run(
            "setsid nohup python3 %s http://127.0.0.1/ --out /opt/mws-test/poll.json"
            " --stop /opt/mws-test/poll.stop --seconds 300 >/dev/null 2>&1 < /dev/null &",
            STAGED,
        )
        assert started.rc == 0, started.stderr
    time.sleep(1)
    bad = run_playbook(BAD)
    time.sleep(1)
    polled = {}
    for host in hosts:
        host.run("touch /opt/mws-test/poll.stop")
    for host in hosts:
        for _ in range(50):  # the poller writes its answer within one request's timeout
            answer = host.run("cat /opt/mws-test/poll.json")
            if answer.rc == 0 and answer.stdout:
                break
            time.sleep(0.2)
        polled[host.backend.hostname] = json.loads(answer.stdout)

    after_bad = {
        h.backend.hostname: {
            "site": h.file(SITE_FILE).md5sum,
            "header": extra_header(h),
            "reloads": graceful_restarts(h),
            "pid": h.check_output("systemctl show -p MainPID --value apache2"),
            "backups": h.run(f"find {' '.join(ROLE_TOUCHED_DIRS)} -name '*~' 2>/dev/null").stdout,
        }
        for h in hosts
    }
    back = converge_run()
    first_after_back = first_websockets(hosts, back.changed())
    yield {
        "hosts": hosts,
        "good": good,
        "first_websockets": {"good": first_after_good, "back": first_after_back},
        "site_good": site_good,
        "header_good": header_good,
        "reloads_before": reloads_before,
        "pids_before": pids_before,
        "bad": bad,
        "bad_changed": bad.changed(),
        "polled": polled,
        "after_bad": after_bad,
        "back": back.changed(),
        "back_paths": back.changed_paths(),
        "user_before": user_before,
    }
    for host in hosts:
        host.run("a2dissite user-site; a2disconf user-extra; systemctl reload apache2")
        host.run(f"rm -f {' '.join(USER_FILES)}")


def test_valid_extra_directive_is_applied(story):
    for name, header in story["header_good"].items():
        assert header == "applied", name


@pytest.mark.parametrize("step", ["good", "back"])
def test_first_websocket_after_a_reloading_converge_gets_frames(story, step):
    for name, seen in story["first_websockets"][step].items():
        assert seen["reloaded"], name
        assert status(seen["first"]) == 101, (name, seen["first"])
        assert seen["first"]["frames"][0]["data"]["type"] == "snapshot", name


def test_rejected_configuration_fails_the_run_with_apaches_complaint(story):
    output = story["bad"].messages()
    assert story["bad"].returncode != 0
    assert "Apache rejects the configuration" in output
    assert "NoSuchDirective" in output


def test_rejected_configuration_is_never_loaded(story):
    for name, after in story["after_bad"].items():
        # The previous site file is back, byte for byte, with no backup left over.
        assert after["site"] == story["site_good"][name]
        assert after["backups"] == ""
        # Apache neither reloaded nor restarted, and still serves the old config.
        assert after["reloads"] == story["reloads_before"][name]
        assert after["pid"] == story["pids_before"][name]
        assert after["header"] == "applied"


def test_site_kept_serving_during_the_rejected_run(story):
    for name, polled in story["polled"].items():
        assert polled["requests"] > 100, polled
        assert polled["failed"] == 0, (name, polled)


def test_converge_after_a_rejected_run_changes_only_what_was_asked(story):
    # Going back to the playbook's own variables drops the extra directive:
    # the site file and the reload, nothing left over from the failed run.
    for name, changed in story["back"].items():
        assert changed == [
            f"{ROLE} : Write the Apache site, the mpm_event sizing, the open-files limit"
            " and the mod_wsgi in use",
            f"{ROLE} : Remove the backups of the accepted files",
            f"{ROLE} : Check the Apache configuration (mod_wsgi_ws_sidecar)",
            f"{ROLE} : Reload Apache (mod_wsgi_ws_sidecar)",
        ], name
        assert story["back_paths"][name] == [SITE_FILE], name


def test_users_own_sites_and_config_survive_every_converge(story):
    for host in story["hosts"]:
        assert user_files_state(host) == story["user_before"][host.backend.hostname]
        assert Probe(host).http("/", port=8090)["body"] == "the user's own site\n"
