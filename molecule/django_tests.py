"""The Django example (playbooks/examples/django.yml) converged as written,
from the collection built and installed outside the repository, then a
deploy of a new release with everything a site holds open: measured under steady load inside each
container (molecule/deploy_load.py: GET /release/ 20 times a second, 20
dashboard WebSockets, 20 push subscribers, a message every 0.1 s), and, in
the scenarios with Chromium, the live page used as a user would across the
same deploy. The scenario's own converge comes back afterwards.

A scenario's test file imports the tests it runs, with the fixtures
`django_site`, `installed` and `deployed`, and gives the fixtures
`django_python` (the interpreter the application runs on),
`django_ansible` (the directory of the ansible-playbook that runs the
example: the pinned ansible-core's or the oldest the collection claims) and
`django_browser` (whether Chromium holds the live page open across the
deploy)."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ansible_collections.ansible.posix
import ansible_collections.community.docker
import pytest
from conftest import (
    MOLECULE_DIR,
    STAGE_DIR,
    converge,
    run_playbook,
    scenario_hosts,
    stage_scripts,
)
from push_tests import wait_for_file

# Where the example is, in the collection as users install it.
EXAMPLE = "ansible_collections/mod_wsgi_ws_sidecar/apache/playbooks/examples/django.yml"
USERS = [
    {"name": "alice", "password": "alice-molecule-password-0123"},
    {"name": "bob", "password": "bob-molecule-password-0123"},
]
LOAD_READY = f"{STAGE_DIR}/deploy-ready"
LOAD_STOP = f"{STAGE_DIR}/deploy-stop"
LOAD_REPORT = f"{STAGE_DIR}/deploy-report.json"
BROWSER_READY = f"{STAGE_DIR}/django-ready"
BROWSER_REPORT = f"{STAGE_DIR}/django-browser.json"
RESTART = "Restart the application's daemon processes gracefully"
# The new code answers within this of the restart's signal.
NEW_CODE_WITHIN = 5.0
# The site's stylesheet, as live/static/live/site.css says it.
TEXT_COLOUR = "rgb(29, 53, 87)"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The collection built and installed outside the repository, as the
    README tells users to: the example runs from there, as written."""
    where = tmp_path_factory.mktemp("user")
    galaxy = str(Path(sys.executable).parent / "ansible-galaxy")
    root = str(MOLECULE_DIR.parent)
    galaxy_run([galaxy, "collection", "build", root, "--output-path", str(where)])
    (tarball,) = where.glob("*.tar.gz")
    galaxy_run(
        [
            galaxy,
            "collection",
            "install",
            "--no-deps",
            # The scenario's own path holds the working tree as this
            # collection: without --force, galaxy finds it "installed".
            "--force",
            "-p",
            str(where / "collections"),
            str(tarball),
        ]
    )
    # What the test bed runs the plays with (the containers' connection, the
    # json callback the tests read), which the oldest ansible-core lacks on
    # its own: copies of the pinned release's.
    for package in (ansible_collections.ansible.posix, ansible_collections.community.docker):
        (source,) = package.__path__
        namespace, name = package.__name__.split(".")[1:]
        shutil.copytree(source, where / "collections/ansible_collections" / namespace / name)
    return where / "collections"


def galaxy_run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def run_example(installed: Path, ansible: str, limit: str | None = None, **extra_vars):
    run = run_playbook(
        {"django_users": USERS, **extra_vars},
        playbook=str(installed / EXAMPLE),
        limit=limit,
        collections=str(installed),
        ansible_bin=ansible,
    )
    assert run.returncode == 0, run.messages()
    return run


@pytest.fixture(scope="module")
def django_site(installed, django_ansible) -> Path:
    """The example converged; the scenario's own playbook back afterwards.
    That the example changes nothing when run again is the deploy's check:
    its run changes the release and the restart, and nothing else."""
    run_example(installed, django_ansible)
    yield installed
    converge()


def js(body: str) -> str:
    """An async function's body as one expression (the browser awaits it)."""
    return f"(async () => {{ {body} }})()"


LOG_IN = js(
    """
    const form = new FormData(document.querySelector("form"));
    form.set("username", "alice");
    form.set("password", PASSWORD);
    const answer = await fetch(location.href, {method: "POST", body: form});
    return answer.url;
    """.replace("PASSWORD", json.dumps(USERS[0]["password"]))
)


def notify(text: str) -> str:
    """A note to the user's channel, POSTed by the page as its form would."""
    return js(
        """
        const form = new FormData(document.getElementById("send"));
        form.set("text", TEXT);
        return (await fetch("/notify/", {method: "POST", body: form})).status;
        """.replace("TEXT", json.dumps(text))
    )


NOTES = "[...document.querySelectorAll('#messages li')].map((li) => li.textContent)"
STYLESHEET = js(
    """
    const href = document.querySelector("link[rel=stylesheet]").href;
    const answer = await fetch(href);
    return {href, status: answer.status, cache: answer.headers.get("Cache-Control"),
            colour: getComputedStyle(document.body).color};
    """
)
OTHERS_TOKEN = js('return (await fetch("/push-token/?channel=user.2")).status;')
REFUSE_OTHER = (
    "feed.subscribe('user.2', {onRefused: (reason) => { window.refused = reason; }}) && 1"
)
RELEASE = js('return (await fetch("/release/")).text();')


def browser_steps(python: str) -> list[dict]:
    """What the browser does, numbered for the checks below; `python` runs
    manage.py as the application's user, as a worker would."""
    worker = [
        "runuser", "-u", "www-data", "--", "env", "-i", "PATH=/usr/bin:/bin",
        python, "/srv/mysite/manage.py", "notify", "alice", "from a worker",
    ]  # fmt: skip
    return [
        {"do": "navigate", "url": "http://127.0.0.1/accounts/login/?next=/", "timeout": 30},
        {"do": "eval", "expr": LOG_IN},  # 1
        {"do": "navigate", "url": "http://127.0.0.1/", "timeout": 30},
        {"do": "wait", "expr": "window.subscription && window.subscription.epoch", "timeout": 30},
        {"do": "eval", "expr": "channel"},  # 4
        {"do": "eval", "expr": notify("from another request")},  # 5
        {"do": "wait", "expr": f"{NOTES}.includes('from another request')", "timeout": 15},
        {"do": "run", "argv": worker, "timeout": 60},  # 7
        {"do": "wait", "expr": f"{NOTES}.includes('from a worker')", "timeout": 15},
        {"do": "eval", "expr": OTHERS_TOKEN},  # 9
        {"do": "eval", "expr": REFUSE_OTHER},
        {"do": "wait", "expr": "window.refused", "timeout": 15},  # 11
        {"do": "eval", "expr": STYLESHEET},  # 12
        {"do": "eval", "expr": RELEASE},  # 13
        {"do": "run", "argv": ["touch", BROWSER_READY]},
        {"do": "wait", "expr": f"{RELEASE}.then((text) => text === 'release 2')", "timeout": 150},
        {"do": "eval", "expr": notify("after the deploy")},  # 16
        {"do": "wait", "expr": f"{NOTES}.includes('after the deploy')", "timeout": 15},
        {"do": "eval", "expr": "window.statuses"},  # 18
    ]


def in_background(host, report: str, command: str, *args: str) -> None:
    """The command started in the container; its stdout lands in `report` when it ends."""
    started = host.run(
        "rm -f %s; (" + command + " > %s.part && mv %s.part %s) >/dev/null 2>&1 &",
        report, *args, report, report, report,
    )  # fmt: skip
    assert started.rc == 0, started.stderr


@pytest.fixture(scope="module")
def deployed(django_site, django_ansible, django_python, django_browser) -> dict:
    """Release 2 deployed with the example playbook, on every host at once,
    while each holds the load (and the browser, if the scenario has one)
    open; per host, the load's report, the browser's and the restart's result."""
    hosts = {host.backend.get_hostname(): host for host in scenario_hosts()}
    for host in hosts.values():
        stage_scripts(host, "deploy_load.py", "browser.py", "wsclient.py")
        host.run("rm -f %s %s", LOAD_STOP, BROWSER_READY)
        in_background(
            host, LOAD_REPORT, "timeout 280 %s %s/deploy_load.py --path /release/ --ready %s"
            " --stop %s", django_python, STAGE_DIR, LOAD_READY, LOAD_STOP,
        )  # fmt: skip
        if django_browser:
            in_background(
                host, BROWSER_REPORT, "timeout -k 10 280 python3 %s/browser.py %s",
                STAGE_DIR, json.dumps(browser_steps(django_python)),
            )  # fmt: skip
    for host in hosts.values():
        if django_browser:
            wait_for_file(host, BROWSER_READY, 150)
        wait_for_file(host, LOAD_READY, 60)
    deploy = run_example(django_site, django_ansible, django_release="2")
    # A few seconds of the new release under the same load, then the reports.
    time.sleep(3)
    reports = {}
    for name, host in hosts.items():
        host.run("touch %s", LOAD_STOP)
        load = json.loads(wait_for_file(host, LOAD_REPORT, 120, cat=True))
        seen = (
            json.loads(wait_for_file(host, BROWSER_REPORT, 200, cat=True))
            if django_browser
            else None
        )
        (restart,) = [r for h, task, r in deploy.results() if task.endswith(RESTART) and h == name]
        changed = [task.split(" : ")[-1] for task in deploy.changed()[name]]
        reports[name] = {"load": load, "browser": seen, "restart": restart, "changed": changed}
    return reports


def check_load(name: str, load: dict, restart: dict) -> None:
    new = load["releases"]["release 2"]["first"] - restart["signalled_at"]
    print(
        f"\n{name}: {load['requests']} requests, {len(load['failed'])} failed;"
        f" {load['websockets']} WebSockets and {load['subscribers']} subscribers,"
        f" {len(load['closed'])} closed; {load['published']} published,"
        f" {sum(load['missed'])} missed, {sum(load['twice'])} twice;"
        f" old processes gone and new ones up in {restart['seconds']} s;"
        f" new code answering {new:.2f} s after the signal"
    )
    assert load["failed"] == []
    assert load["closed"] == []
    assert load["missed"] == [0] * 20 and load["twice"] == [0] * 20
    assert set(load["releases"]) == {"release 1", "release 2"}
    # A request sent a moment before the signal may already meet the new
    # code (it reached the daemon after the old process stopped taking
    # requests), so the bound is an upper one.
    assert new <= NEW_CODE_WITHIN
    # Nothing answers from the old code once the new answered and the old ended.
    assert load["releases"]["release 1"]["last"] < restart["signalled_at"] + restart["seconds"]


def test_a_deploy_under_load_keeps_every_connection(host, deployed):
    report = deployed[host.backend.get_hostname()]
    assert report["changed"] == ["Write the release", "Put the new code live", RESTART]
    check_load(host.backend.get_hostname(), report["load"], report["restart"])


def test_the_live_page_works_in_a_browser_across_the_deploy(host, deployed):
    seen = deployed[host.backend.get_hostname()]["browser"]
    assert "error" not in seen, seen
    assert seen["exceptions"] == [], seen["exceptions"]
    steps = seen["steps"]
    value = [step.get("value") for step in steps]
    assert value[1] == "http://127.0.0.1/", "the login did not land on the page"
    assert steps[3]["ok"], "the page's subscription was never confirmed"
    assert value[4] == "user.1"
    assert value[5] == 200 and steps[6]["ok"], "a request's note never arrived"
    assert steps[7]["rc"] == 0 and steps[8]["ok"], f"manage.py's note never arrived: {steps[7]}"
    assert value[9] == 403, "another user's channel got a token"
    assert steps[11]["ok"] and "token" in steps[11]["value"], steps[11]
    stylesheet = value[12]
    assert stylesheet["status"] == 200 and stylesheet["colour"] == TEXT_COLOUR
    assert stylesheet["cache"] == "public, max-age=31536000"
    # ManifestStaticFilesStorage's name: site.<content hash>.css.
    assert stylesheet["href"].startswith("http://127.0.0.1/static/live/site.")
    assert value[13] == "release 1"
    assert steps[15]["ok"], "the new release never answered"
    assert value[16] == 200 and steps[17]["ok"], "no note after the deploy"
    # The page's one WebSocket: connected once, never interrupted.
    assert value[18] == ["connecting", "live"]
