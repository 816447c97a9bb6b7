"""A web host killed outright (docker kill: no shutdown, no goodbye to its
clients): the balancer marks it down within seconds and closes its
WebSockets, and their clients, through the balancer, resume on the other web
host without losing a message while the application goes on publishing;
the dashboard on the survivor marks the dead host silent, in Chromium too.

The last of the scenario's tests (pytest takes the files in name order): the
killed host stays dead until Molecule destroys the scenario."""

import json
import subprocess
import time

from conftest import browse
from push_tests import push_load_in_background, wait_for_file
from test_fleet import fleet_host, fleet_rows, server_states

CLIENTS = 100


def marked_down_at(balancer, server: str) -> float:
    """When HAProxy logged the server DOWN (Unix time, from the balancer's journal)."""
    journal = balancer.check_output("journalctl -u haproxy -o short-unix --no-pager")
    logged = [line for line in journal.splitlines() if f"webservers/{server} is DOWN" in line]
    assert logged, f"HAProxy logged no DOWN for {server}"
    return float(logged[-1].split()[0])


def test_a_killed_web_hosts_subscribers_resume_on_the_other():
    balancer, survivor, victim = (fleet_host(s) for s in ("-balancer", "-debian12", "-debian13"))
    names = {h: h.backend.get_hostname() for h in (survivor, victim)}
    assert server_states() == dict.fromkeys(names.values(), "UP")
    mark, out = "/opt/mws-test/kill-now", "/opt/mws-test/kill-report"
    balancer.run("rm -f %s", mark)
    push_load_in_background(
        balancer,
        out,
        *("--clients", str(CLIENTS), "--rate", "20", "--seconds", "20"),
        "--event=5:touch " + mark,
    )
    wait_for_file(balancer, mark, 90)
    killed = subprocess.run(["docker", "kill", names[victim]], capture_output=True, text=True)
    assert killed.returncode == 0, killed.stderr
    # The containers share this machine's clock: HAProxy's own log says when
    # it marked the host down, whatever the polling below costs.
    killed_at = time.time()
    deadline = time.monotonic() + 20
    # "UP 1/2" after the first failed check, "DOWN" after the second.
    while server_states()[names[victim]] != "DOWN" and time.monotonic() < deadline:
        time.sleep(0.2)
    marked_down_in = marked_down_at(balancer, names[victim]) - killed_at
    report = json.loads(wait_for_file(balancer, out, 120, cat=True))
    print(json.dumps({k: v for k, v in report.items() if k != "events"}))
    print(f"the balancer marked the killed host down in {marked_down_in:.1f} s")
    assert server_states() == {names[survivor]: "UP", names[victim]: "DOWN"}
    assert marked_down_in < 5, marked_down_in
    assert report["subscribed_before_publishing"] == CLIENTS
    # leastconn spread the clients over both hosts: the killed host's share
    # came back, through the balancer, to the survivor.
    assert report["reconnects_total"] >= CLIENTS // 4, report
    assert report["published"] >= 0.9 * 20 * 20, report["publish_failure_samples"]
    assert report["clients_with_problems"] == 0, report["problem_samples"]
    assert report["missing_total"] == report["duplicates_total"] == report["resets_total"] == 0


def test_the_survivors_dashboard_marks_the_dead_host_silent():
    survivor, victim = fleet_host("-debian12"), fleet_host("-debian13")
    rows = fleet_rows(survivor)
    dead = rows[victim.backend.get_hostname()]
    # Killed more than the 5 s of silent_after ago (the load above ran 20 s on).
    assert dead["silent"] is True and dead["age"] > 5, dead
    assert rows[survivor.backend.get_hostname()]["silent"] is False


def test_the_dashboard_page_shows_the_dead_host_as_silent():
    survivor, victim = fleet_host("-debian12"), fleet_host("-debian13")
    rows = "#fleet-hosts tr"
    report = browse(
        survivor,
        [
            {"do": "navigate", "url": "http://127.0.0.1/metrics/"},
            {
                "do": "wait",
                "expr": f"document.querySelectorAll('{rows}').length === 2",
                "timeout": 15,
            },
            {
                "do": "eval",
                "expr": f"JSON.stringify([...document.querySelectorAll('{rows}')].map("
                "(tr) => [tr.dataset.host, tr.className, tr.lastChild.textContent]))",
            },
        ],
    )
    steps = report["steps"]
    assert all(s.get("ok", True) for s in steps), steps
    shown = {host: (kind, heard) for host, kind, heard in json.loads(steps[-1]["value"])}
    assert shown[survivor.backend.get_hostname()] == ("live", "now"), shown
    kind, heard = shown[victim.backend.get_hostname()]
    assert kind == "silent" and heard.startswith("silent, ") and heard.endswith(" s ago"), shown
    assert report["exceptions"] == [], report["exceptions"]
