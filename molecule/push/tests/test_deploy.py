"""A deploy of new application code keeps every WebSocket and push
subscription: the role's handler "Restart the application" restarts the
application's daemon processes alone, gracefully (molecule/push/deploy.yml,
as a user's deploy playbook). Measured under steady load, inside each
container (molecule/deploy_load.py): HTTP requests 20 a second, 20 dashboard
WebSockets and 20 push subscribers, a message published every 0.1 s. The
figures are printed; docs/deploying.md quotes them."""

import json

import pytest
from conftest import converge, run_playbook, stage_scripts
from push_tests import wait_for_file

LOAD = "/opt/mws-test/deploy_load.py"
READY = "/opt/mws-test/deploy-ready"
STOP = "/opt/mws-test/deploy-stop"
REPORT = "/opt/mws-test/deploy-report.json"
RESTART = "Restart the application's daemon processes gracefully"
# The bound: the new code answers within this of the deploy's signal.
NEW_CODE_WITHIN = 5.0


@pytest.fixture(scope="module")
def deployed_app():
    """The test's application (release 1) in place of the demo; the demo
    back afterwards, for the tests that follow."""
    first = run_playbook({"deploy_release": 1}, playbook="deploy.yml")
    assert first.returncode == 0, first.messages()
    yield
    converge()


def test_a_deploy_restarts_the_application_alone_and_keeps_every_connection(
    host, probe, deployed_app
):
    name = host.backend.get_hostname()
    stage_scripts(host, "deploy_load.py")
    assert probe.http("/")["body"] == "release 1"
    started = host.run(
        "rm -f %s %s %s; (timeout 280 python3 %s --ready %s --stop %s > %s.part"
        " && mv %s.part %s) >/dev/null 2>&1 &",
        READY,
        STOP,
        REPORT,
        LOAD,
        READY,
        STOP,
        REPORT,
        REPORT,
        REPORT,
    )
    assert started.rc == 0, started.stderr
    wait_for_file(host, READY, 60)
    deploy = run_playbook({"deploy_release": 2}, playbook="deploy.yml", limit=name)
    assert deploy.returncode == 0, deploy.messages()
    # A few seconds of the new release under the same load, then the report.
    host.run("sleep 3; touch %s", STOP)
    report = json.loads(wait_for_file(host, REPORT, 120, cat=True))
    # Named with its role's prefix, as an included task in a handler.
    (restart,) = [r for h, task, r in deploy.results() if task.endswith(RESTART) and h == name]
    new = report["releases"]["release 2"]["first"] - restart["signalled_at"]
    print(
        f"\n{name}: {report['requests']} requests, {len(report['failed'])} failed;"
        f" {report['websockets']} WebSockets and {report['subscribers']} subscribers,"
        f" {len(report['closed'])} closed; {report['published']} published,"
        f" {sum(report['missed'])} missed, {sum(report['twice'])} twice;"
        f" old processes gone and new ones up in {restart['seconds']} s;"
        f" new code answering {new:.2f} s after the signal"
    )
    assert [t.split(" : ")[-1] for t in deploy.changed()[name]] == [
        "Put the release in place",
        RESTART,
    ]
    assert report["failed"] == []
    assert report["closed"] == []
    assert report["missed"] == [0] * 20 and report["twice"] == [0] * 20
    assert set(report["releases"]) == {"release 1", "release 2"}
    assert 0 < new <= NEW_CODE_WITHIN
    # Nothing answers from the old code once the new answered and the old ended.
    assert report["releases"]["release 1"]["last"] < restart["signalled_at"] + restart["seconds"]
