"""The fleet through its balancer (playbooks/examples/fleet.yml): HAProxy
health-checks both web hosts; the dashboard on each web host shows both;
what the application publishes on one web host reaches subscribers on
every web host; a bad variable stops the run before any web host leaves
the balancer; a deploy that fails on its first host stops the roll with
that host out and the fleet serving; and 200 subscribers through the
balancer during a rolling deploy of both web hosts, the application
publishing 50 a second through the balancer too, each get every message
exactly once and in order. Clients run inside the containers:
on a web host against its loopback, or on the balancer against its own."""

import json
import time

import pytest
from conftest import Probe, run_playbook, scenario_hosts, stage_scripts
from push_tests import (
    PROBE,
    REDIS_PASSWORD,
    TOKEN_SECRET,
    push_load_in_background,
    push_probe,
    session_frames,
    wait_for_file,
)

CHANNEL = "demo.public.fleet"
SESSION = "/opt/mws-test/fleet-session.json"
# Created by the session once the sidecar answered its subscription.
SUBSCRIBED = "/opt/mws-test/fleet-session-subscribed"
PUBLISH = (
    "import urllib.request, sys; print(urllib.request.urlopen("
    "'http://127.0.0.1/push-demo/publish', sys.argv[1].encode(), 10).read().decode())"
)
# HAProxy's runtime API: each web host's state (UP, MAINT, DRAIN, DOWN).
SERVER_STATES = (
    "import csv, socket\n"
    "s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock')\n"
    "s.sendall(b'show stat\\n'); data = b''\n"
    "while chunk := s.recv(65536): data += chunk\n"
    "for row in csv.DictReader(data.decode().lstrip('# ').splitlines()):\n"
    "    if row['pxname'] == 'webservers' and row['svname'] != 'BACKEND':\n"
    "        print(row['svname'], row['status'])\n"
)
# A change Apache rejects (its configuration test fails).
BAD = {"mod_wsgi_ws_sidecar_extra_directives": ["NoSuchDirective on"]}


def fleet_host(suffix: str):
    (found,) = [h for h in scenario_hosts() if h.backend.get_hostname().endswith(suffix)]
    return found


def web_hosts() -> list:
    return [fleet_host("-debian12"), fleet_host("-debian13")]


def server_states() -> dict[str, str]:
    answer = fleet_host("-balancer").check_output("python3 -c %s", SERVER_STATES)
    return dict(line.split(" ", 1) for line in answer.splitlines())


def fleet_rows(host) -> dict[str, dict]:
    """The fleet as the dashboard on a web host shows it (its third frame:
    the first is the one before this WebSocket opened): host -> row."""
    answer = Probe(host).ws("/metrics/ws", frames=3, timeout=10)
    fleet = answer["frames"][-1]["data"]["fleet"]
    assert fleet["error"] is None, fleet
    return {row["host"]: row for row in fleet["hosts"]}


def start_session(host) -> None:
    """A subscriber in the background on the host's loopback (through the
    balancer on the balancer), its answer written to SESSION. Publish only
    after subscribed(host): it may take a while to subscribe."""
    stage_scripts(host, "push_probe.py")
    started = host.run(
        "rm -f %s %s; (timeout 90 python3 %s session %s --ready %s --frames 2 --timeout 60"
        " > %s.part && mv %s.part %s) >/dev/null 2>&1 &",
        *(SESSION, SUBSCRIBED, PROBE, CHANNEL, SUBSCRIBED, SESSION, SESSION, SESSION),
    )
    assert started.rc == 0, started.stderr


def subscribed(host) -> None:
    """Waits until the host's session has subscribed: what is published from
    then on reaches it live."""
    wait_for_file(host, SUBSCRIBED, 60)


def session_of(host) -> list[dict]:
    done = host.run(
        "timeout 30 sh -c 'until test -e %s; do sleep 0.2; done' && cat %s", SESSION, SESSION
    )
    assert done.rc == 0, f"no session answer on {host.backend.get_hostname()}"
    return session_frames(done.stdout)


def test_the_balancer_health_checks_both_web_hosts_up():
    names = sorted(h.backend.get_hostname() for h in web_hosts())
    assert server_states() == dict.fromkeys(names, "UP")


def test_the_dashboard_on_each_web_host_shows_every_web_host():
    names = sorted(h.backend.get_hostname() for h in web_hosts())
    for host in web_hosts():
        rows = fleet_rows(host)
        assert sorted(rows) == names, rows
        assert not any(row["silent"] for row in rows.values()), rows
        # This host's own row counts this very WebSocket against the cap
        # (two sidecars of 500 each).
        own = rows[host.backend.get_hostname()]
        assert own["websockets"] >= 1 and own["cap"] == 1000, own
        assert own["slots"] > own["idle"] > 0, own


def test_a_message_published_on_one_web_host_reaches_every_web_host():
    web12, web13 = web_hosts()
    balancer = fleet_host("-balancer")
    for host in (web12, web13, balancer):
        start_session(host)
    for host in (web12, web13, balancer):
        subscribed(host)
    published = web13.run("python3 -c %s %s", PUBLISH, f"channel={CHANNEL}&message=across")
    assert published.rc == 0, published.stderr
    position = published.stdout.strip()
    for host in (web12, web13, balancer):
        frames = session_of(host)
        assert [f["type"] for f in frames] == ["subscribed", "message"], frames
        assert (frames[1]["id"], frames[1]["data"]) == (position, {"text": "across"})


def test_a_revocation_on_one_web_host_ends_the_subscriptions_on_every_web_host():
    """The application on one web host revokes a user's tokens: that user's
    subscriptions on both web hosts end within a second."""
    web12, web13 = web_hosts()
    (token,) = push_probe(web12, "token", "orders.7", "--subject", "user:revoked").values()
    out, ready = "/opt/mws-test/revoked-session.json", "/opt/mws-test/revoked-ready"
    for host in (web12, web13):
        started = host.run(
            "rm -f %s %s; (timeout 60 python3 %s session orders.7 --token %s --ready %s"
            " --frames 2 --timeout 30 > %s.part && mv %s.part %s) >/dev/null 2>&1 &",
            *(out, ready, PROBE, token, ready, out, out, out),
        )
        assert started.rc == 0, started.stderr
    for host in (web12, web13):
        wait_for_file(host, ready, 60)
    revoked_at = push_probe(web13, "revoke", "--subject", "user:revoked")["at"]
    for host in (web12, web13):
        answer = json.loads(wait_for_file(host, out, 40, cat=True))
        assert [f["type"] for f in answer["frames"]] == ["subscribed", "revoked"], answer
        assert answer["times"][1] - revoked_at < 1.0, answer["times"][1] - revoked_at


def endpoint(host) -> dict[str, float]:
    """The dashboard's Prometheus endpoint on a web host: sample -> value."""
    answer = Probe(host).http("/metrics/metrics")
    assert answer["status"] == 200, answer
    lines = (line for line in answer["body"].splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines)}


def test_what_the_push_sidecar_counts_reaches_the_dashboards_endpoint():
    # Two daemon processes: the push sidecar's counters, in its own files,
    # added up by the dashboard's endpoint.
    push = 'sidecar="push"'
    for host in web_hosts():
        before = endpoint(host)
        start_session(host)
        subscribed(host)
        published = host.run("python3 -c %s %s", PUBLISH, f"channel={CHANNEL}&message=n")
        assert published.rc == 0, published.stderr
        assert [f["type"] for f in session_of(host)] == ["subscribed", "message"]
        after = endpoint(host)
        for name in (
            f"mod_wsgi_ws_sidecar_push_messages_total{{{push}}}",
            f"mod_wsgi_ws_sidecar_push_deliveries_total{{{push}}}",
            f"mod_wsgi_ws_sidecar_fanout_seconds_count{{{push}}}",
            f"mod_wsgi_ws_sidecar_websockets_accepted_total{{{push}}}",
        ):
            assert after[name] >= before.get(name, 0) + 1, (name, before.get(name), after[name])
        assert after[f"mod_wsgi_ws_sidecar_websockets_max{{{push}}}"] == 500
        # What Redis holds, as the push sidecar read it (every 10 s: until
        # a reading after this message's channel was made).
        redis = redis_reading(host)
        assert redis["maxmemory"] == 256 * 1024 * 1024 and redis["used_memory"] > 0, redis
        after = endpoint(host)
        assert after[f"mod_wsgi_ws_sidecar_push_channels{{{push}}}"] >= 1
        assert after[f"mod_wsgi_ws_sidecar_push_redis_memory_bytes{{{push}}}"] > 0
        assert after[f"mod_wsgi_ws_sidecar_push_redis_maxmemory_bytes{{{push}}}"] == 256 << 20


def redis_reading(host) -> dict:
    """The push sidecar's reading of Redis in the dashboard's frames, once it
    counts a channel (bounded: two readings' time)."""
    deadline = time.monotonic() + 25
    while True:
        frame = Probe(host).ws("/metrics/ws", frames=1, timeout=10)["frames"][-1]["data"]
        (redis,) = frame["push"]
        if redis["channels"] >= 1 or time.monotonic() > deadline:
            assert redis["name"] == "push" and redis["channels"] >= 1, redis
            return redis
        time.sleep(1)


def test_a_bad_variable_stops_the_run_before_any_web_host_leaves_the_balancer():
    pids = {h: h.check_output("systemctl show -p MainPID --value apache2") for h in web_hosts()}
    run = run_playbook({"push_token_secret": "too-short"})
    assert run.returncode != 0
    assert "mod_wsgi_ws_sidecar_push_token_secret" in run.messages()
    # The role's checks ran on every web host first: none was drained or touched.
    assert not any(run.changed().values()), run.changed()
    names = sorted(h.backend.get_hostname() for h in web_hosts())
    assert server_states() == dict.fromkeys(names, "UP")
    for host, pid in pids.items():
        assert host.check_output("systemctl show -p MainPID --value apache2") == pid


def test_a_deploy_that_fails_on_a_host_stops_the_roll_with_the_fleet_serving():
    web12, web13 = web_hosts()
    pid13 = web13.check_output("systemctl show -p MainPID --value apache2")
    run = run_playbook(BAD)
    assert run.returncode != 0
    assert "NoSuchDirective" in run.messages()
    # The roll stopped at the first host: the second was never touched.
    assert run.recap().get(web13.backend.get_hostname(), 0) == 0, run.recap()
    assert web13.check_output("systemctl show -p MainPID --value apache2") == pid13
    # The failed host stays out of the balancer; the site serves from the other.
    states = server_states()
    assert states[web12.backend.get_hostname()] == "MAINT", states
    assert states[web13.backend.get_hostname()] == "UP", states
    answer = fleet_host("-balancer").run(
        "python3 -c %s %s", PUBLISH, f"channel={CHANNEL}&message=still-serving"
    )
    assert answer.rc == 0, answer.stderr


@pytest.fixture(scope="session")
def rolling_deploy() -> dict:
    """200 subscribers and the publisher on the balancer, through it, while
    the fleet playbook (-vvv) rolls over both web hosts; publishing stops
    when the deploy is over. Puts back the host the failed deploy left out."""
    balancer = fleet_host("-balancer")
    mark, done, out = (f"/opt/mws-test/rolling-{name}" for name in ("publishing", "done", "report"))
    balancer.run("rm -f %s %s", mark, done)
    push_load_in_background(
        balancer,
        out,
        *("--clients", "200", "--rate", "50", "--seconds", "240"),
        *("--until-file", done, "--event", f"0:touch {mark}"),
    )
    wait_for_file(balancer, mark, 90)
    deploy = run_playbook(verbose=True)
    balancer.run("touch %s", done)
    report = wait_for_file(balancer, out, 120, cat=True)
    return {"deploy": deploy, "load": json.loads(report), "states": server_states()}


def test_a_rolling_deploy_takes_each_web_host_out_and_puts_it_back(rolling_deploy):
    deploy = rolling_deploy["deploy"]
    assert deploy.returncode == 0, deploy.output[-6000:]
    names = sorted(h.backend.get_hostname() for h in web_hosts())
    assert rolling_deploy["states"] == dict.fromkeys(names, "UP")
    changed = deploy.changed()
    for name in names:
        for task in ("Send this host no new clients", "Put this host back"):
            assert any(t.startswith(task) for t in changed.get(name, [])), (name, changed)


def test_subscribers_get_every_message_once_in_order_through_a_rolling_deploy(rolling_deploy):
    report = rolling_deploy["load"]
    print(json.dumps({k: v for k, v in report.items() if k != "events"}))
    assert report["subscribed_before_publishing"] == 200
    # Each drain closed its host's WebSockets: those clients resumed on the other.
    assert report["reconnects_total"] >= 200, report
    assert report["published"] >= 500, report
    assert report["publish_failures"] == 0, report["publish_failure_samples"]
    assert report["clients_with_problems"] == 0, report["problem_samples"]
    assert report["missing_total"] == report["duplicates_total"] == report["resets_total"] == 0


def test_neither_secret_is_printed_by_a_verbose_deploy(rolling_deploy):
    deploy = rolling_deploy["deploy"]
    for secret in (REDIS_PASSWORD, TOKEN_SECRET):
        assert secret not in deploy.output + deploy.stderr


def test_check_mode_reports_no_change_on_the_redis_host_and_the_balancer(check_mode_changes):
    for suffix in ("-redis", "-balancer"):
        assert check_mode_changes[fleet_host(suffix).backend.get_hostname()] == []
