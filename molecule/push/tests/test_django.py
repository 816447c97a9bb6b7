"""The Django example (playbooks/examples/django.yml) converged as written,
then used in Chromium inside each container: log in, open the live page, a
note published by another request and one by manage.py as the
application's user arrive; another user's channel is refused; the
stylesheet comes from Apache with its year-long cache header; and a deploy
of a new release while the page is open changes what the application
answers while the page's WebSocket never closes. The demo comes back
afterwards, for the tests that follow."""

import json

import pytest
from conftest import STAGE_DIR, converge, run_playbook, stage_scripts
from push_tests import wait_for_file

EXAMPLE = "../../playbooks/examples/django.yml"
USERS = [
    {"name": "alice", "password": "alice-molecule-password-0123"},
    {"name": "bob", "password": "bob-molecule-password-0123"},
]
READY = f"{STAGE_DIR}/django-ready"
REPORT = f"{STAGE_DIR}/django-browser.json"
# The site's stylesheet, as site.css says it.
TEXT_COLOUR = "rgb(29, 53, 87)"


@pytest.fixture(scope="module")
def django_site():
    first = run_playbook({"django_users": USERS}, playbook=EXAMPLE)
    assert first.returncode == 0, first.messages()
    again = run_playbook({"django_users": USERS}, playbook=EXAMPLE)
    assert again.returncode == 0, again.messages()
    assert all(changed == [] for changed in again.changed().values()), again.changed()
    yield
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
    "window.subscription.epoch && feed.subscribe('user.2', "
    "{onRefused: (reason) => { window.refused = reason; }}) && true"
)
RELEASE = js('return (await fetch("/release/")).text();')


def test_the_django_example_works_in_a_browser_across_a_deploy(host, django_site):
    name = host.backend.get_hostname()
    stage_scripts(host, "browser.py", "wsclient.py")
    worker = [
        "runuser", "-u", "www-data", "--", "env", "-i", "PATH=/usr/bin:/bin",
        "python3", "/srv/mysite/manage.py", "notify", "alice", "from a worker",
    ]  # fmt: skip
    steps = [
        {"do": "navigate", "url": "http://127.0.0.1/accounts/login/?next=/", "timeout": 30},
        {"do": "eval", "expr": LOG_IN},
        {"do": "navigate", "url": "http://127.0.0.1/", "timeout": 30},
        {"do": "wait", "expr": "window.subscription && window.subscription.epoch", "timeout": 30},
        {"do": "eval", "expr": "channel"},
        {"do": "eval", "expr": notify("from another request")},
        {"do": "wait", "expr": f"{NOTES}.includes('from another request')", "timeout": 15},
        {"do": "run", "argv": worker, "timeout": 60},
        {"do": "wait", "expr": f"{NOTES}.includes('from a worker')", "timeout": 15},
        {"do": "eval", "expr": OTHERS_TOKEN},
        {"do": "eval", "expr": REFUSE_OTHER},
        {"do": "wait", "expr": "window.refused", "timeout": 15},
        {"do": "eval", "expr": STYLESHEET},
        {"do": "eval", "expr": RELEASE},
        {"do": "run", "argv": ["touch", READY]},
        {"do": "wait", "expr": f"{RELEASE}.then((text) => text === 'release 2')", "timeout": 150},
        {"do": "eval", "expr": notify("after the deploy")},
        {"do": "wait", "expr": f"{NOTES}.includes('after the deploy')", "timeout": 15},
        {"do": "eval", "expr": "window.statuses"},
    ]
    started = host.run(
        "rm -f %s %s; (timeout -k 10 280 python3 %s/browser.py %s > %s.part"
        " && mv %s.part %s) >/dev/null 2>&1 &",
        READY, REPORT, STAGE_DIR, json.dumps(steps), REPORT, REPORT, REPORT,
    )  # fmt: skip
    assert started.rc == 0, started.stderr
    wait_for_file(host, READY, 150)
    deploy = run_playbook(
        {"django_users": USERS, "django_release": "2"}, playbook=EXAMPLE, limit=name
    )
    assert deploy.returncode == 0, deploy.messages()
    report = json.loads(wait_for_file(host, REPORT, 200, cat=True))
    assert "error" not in report, report
    assert report["exceptions"] == [], report["exceptions"]
    s = [step.get("value", step) for step in report["steps"]]
    assert s[1] == "http://127.0.0.1/", "the login did not land on the page"
    assert s[4] == "user.1"
    assert s[5] == 200 and report["steps"][6]["ok"], "a request's note never arrived"
    assert report["steps"][7]["rc"] == 0, report["steps"][7]
    assert report["steps"][8]["ok"], "manage.py's note never arrived"
    assert s[9] == 403, "another user's channel got a token"
    assert report["steps"][11]["ok"] and "token" in report["steps"][11]["value"]
    stylesheet = s[12]
    assert stylesheet["status"] == 200 and stylesheet["colour"] == TEXT_COLOUR
    assert stylesheet["cache"] == "public, max-age=31536000"
    # ManifestStaticFilesStorage's name: site.<content hash>.css.
    assert stylesheet["href"].startswith("http://127.0.0.1/static/live/site.")
    assert s[13] == "release 1"
    assert report["steps"][15]["ok"], "the new release never answered"
    assert s[16] == 200 and report["steps"][17]["ok"], "no note after the deploy"
    # The page's one WebSocket: connected once, never interrupted.
    assert s[18] == ["connecting", "live"]
    restarted = [
        task for task in deploy.changed()[name] if task.endswith("daemon processes gracefully")
    ]
    assert restarted, deploy.changed()[name]
