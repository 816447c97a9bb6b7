"""The push channel end to end on a web host, shared by the scenarios that
deploy it (fleet: Redis on a host of its own; push: Redis on the web host,
playbooks/examples/push.yml): the demo WSGI application publishes,
subscribers receive through Apache, positions resume across disconnects,
Apache reloads, a killed sidecar, a restarted or killed Redis; private
channels need a signed token, which ends at its expiry. Clients run inside
the web host's container (molecule/push_load.py, molecule/push_probe.py),
against 127.0.0.1. A scenario's test_push.py imports the tests that apply
to it."""

import json
import time

import pytest
from conftest import scenario_hosts, stage_scripts

__all__ = [
    "test_200_subscribers_get_every_message_once_in_order_across_reload_and_kill",
    "test_a_client_past_the_history_is_told_to_reset",
    "test_a_client_that_comes_back_gets_exactly_what_it_missed",
    "test_a_private_channel_refuses_bad_tokens_before_any_message",
    "test_a_redis_restart_loses_nothing_and_publishing_fails_fast_meanwhile",
    "test_a_signed_token_opens_its_private_channel",
    "test_a_token_subscription_ends_when_its_token_expires",
    "test_check_mode_reports_no_change_on_a_converged_host",
    "test_publishing_while_redis_is_down_is_a_quick_clear_error",
    "test_redis_killed_outright_while_publishing_loses_nothing_acknowledged",
    "test_the_shared_secrets_are_readable_by_the_daemon_group_only",
    "test_what_the_app_publishes_reaches_a_subscriber_through_apache",
    "test_when_redis_loses_its_data_a_returning_client_resets",
]

PROBE = "/opt/mws-test/push_probe.py"
LOAD = "/opt/mws-test/push_load.py"
SETTINGS = "/etc/mod_wsgi_ws_sidecar/push.json"
# The sidecar's daemon process: display-name is the group's name.
KILL_SIDECAR = r"pkill -9 -f '^\(wsgi:push\) '"
REDIS_PASSWORD = "molecule-redis-password-0123456789"
TOKEN_SECRET = "molecule-token-secret-0123456789abcdefghij"
REDIS_USER = "mod_wsgi_ws_sidecar"


# The demo application asked to publish; prints its status and answer if it refuses.
REFUSED_PUBLISH = (
    "import urllib.request, urllib.error\n"
    "url = 'http://127.0.0.1/push-demo/publish'\n"
    "try:\n"
    "    urllib.request.urlopen(url, b'channel=demo&message=x', 10)\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code, e.read().decode())\n"
)


def push_probe(host, *args: str) -> dict:
    stage_scripts(host, "push_probe.py")
    result = host.run("timeout 90 python3 %s" + " %s" * len(args), PROBE, *args)
    assert result.rc == 0, f"push_probe {args}: {result.stderr}"
    return json.loads(result.stdout)


def push_load(host, *args: str) -> dict:
    stage_scripts(host, "push_load.py")
    result = host.run("timeout 240 python3 %s" + " %s" * len(args), LOAD, *args)
    assert result.rc == 0, f"push_load {args}: {result.stderr}"
    return json.loads(result.stdout)


def push_load_in_background(host, out: str, *args: str) -> None:
    """push_load started on the host, its report written to `out` when done."""
    stage_scripts(host, "push_load.py")
    started = host.run(
        "rm -f %s; (timeout 280 python3 %s" + " %s" * len(args) + " > %s.part && mv %s.part %s)"
        " >/dev/null 2>&1 &",
        *(out, LOAD, *args, out, out, out),
    )
    assert started.rc == 0, started.stderr


def wait_for_file(host, path: str, seconds: int, cat: bool = False) -> str:
    """Waits (bounded) until the file exists on the host; its text if `cat`."""
    found = host.run(
        "timeout %s sh -c 'until test -e %s; do sleep 0.1; done'" + (" && cat %s" if cat else ""),
        str(seconds),
        path,
        *([path] if cat else []),
    )
    assert found.rc == 0, f"{path} never appeared on {host.backend.get_hostname()}"
    return found.stdout


def session_frames(stdout: str) -> list[dict]:
    """The frames of the one session among the JSON lines of a shell command."""
    (session,) = [json.loads(line) for line in stdout.splitlines() if '"frames"' in line]
    return session["frames"]


def session_while_publishing(host, token: str, text: str, frames: int, timeout: float):
    """A session on the private channel orders.7 with `token`, during which the
    application's module publishes `text` there, once the sidecar has answered
    the subscription (the session's --ready file, not a sleep, orders the two);
    the frames it got."""
    stage_scripts(host, "push_probe.py")
    ready = "/opt/mws-test/orders-ready"
    session = host.run(
        "rm -f %s; timeout 60 python3 %s session orders.7 --token %s --ready %s"
        " --frames %s --timeout %s & session=$!; "
        "timeout 30 sh -c 'until test -e %s; do sleep 0.05; done' "
        "&& python3 %s publish orders.7 %s && wait $session",
        ready,
        PROBE,
        token or "''",
        ready,
        str(frames),
        str(timeout),
        ready,
        PROBE,
        text,
    )
    assert session.rc == 0, session.stderr
    return session_frames(session.stdout)


def kinds(frames: list[dict]) -> list[str]:
    return [f.get("type", "closed") for f in frames]


def redis_cli(host, *args: str, user: bool = True):
    auth = ["--user", REDIS_USER, "--pass", REDIS_PASSWORD, "--no-auth-warning"] if user else []
    return host.run("redis-cli" + " %s" * (len(auth) + len(args)), *auth, *args)


def redis_host(host):
    """The scenario's Redis: a host of its own (the inventory group redis),
    or the web host itself."""
    found = [h for h in scenario_hosts() if h.backend.get_hostname().endswith("-redis")]
    return found[0] if found else host


def test_what_the_app_publishes_reaches_a_subscriber_through_apache(host):
    answer = push_probe(host, "session", "demo", "--publish", "order 42 shipped", "--frames", "2")
    ((status, position),) = answer["published"]
    assert status == 200, position
    subscribed, message = answer["frames"]
    assert subscribed["type"] == "subscribed" and subscribed["channel"] == "demo"
    assert message == {
        "type": "message",
        "channel": "demo",
        "id": position,
        "data": {"text": "order 42 shipped"},
    }


def test_a_client_that_comes_back_gets_exactly_what_it_missed(host):
    first = push_probe(host, "session", "demo", "--publish", "seen", "--frames", "2")
    epoch, seen = first["frames"][0]["epoch"], first["frames"][1]["id"]
    missed = push_probe(host, "publish", "demo", "missed", "--count", "3")["positions"]
    # An epoch may start with "-": given as --epoch=VALUE, never taken for an option.
    again = push_probe(
        host, "session", "demo", f"--since={seen}", f"--epoch={epoch}", "--frames=5", "--timeout=2"
    )
    frames = again["frames"]
    # The replay, then "subscribed": what follows it is live.
    assert kinds(frames) == ["message", "message", "message", "subscribed"], frames
    assert frames[3]["replayed"] == 3
    assert [f["id"] for f in frames[:3]] == missed
    assert [f["data"]["text"] for f in frames[:3]] == ["missed-0", "missed-1", "missed-2"]


def test_a_client_past_the_history_is_told_to_reset(host):
    history = json.loads(host.file(SETTINGS).content_string)["history"]
    (oldest,) = push_probe(host, "publish", "demo.public.trim", "old")["positions"]
    push_probe(host, "publish", "demo.public.trim", "new", "--count", str(history + 5))
    epoch = push_probe(host, "session", "demo")["frames"][0]["epoch"]
    answer = push_probe(
        host, "session", "demo.public.trim", f"--since={oldest}", f"--epoch={epoch}"
    )
    (reset,) = answer["frames"]
    assert reset["type"] == "reset"
    assert reset["reason"] == "the history no longer reaches back that far"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "no valid token"),
        ("9999999999.forged-mac", "token not valid for this channel"),
        ("expired", "token expired"),
        ("other", "token not valid for this channel"),
    ],
)
def test_a_private_channel_refuses_bad_tokens_before_any_message(host, token, reason):
    if token == "expired":
        token = push_probe(host, "token", "orders.7", "--ttl", "-1")["token"]
    elif token == "other":
        token = push_probe(host, "token", "orders.8")["token"]
    # Subscribe (refused), then a message is published on the channel meanwhile.
    frames = session_while_publishing(host, token, "secret", frames=3, timeout=3)
    assert frames == [{"type": "refused", "channel": "orders.7", "reason": reason}]


def test_a_signed_token_opens_its_private_channel(host):
    token = push_probe(host, "token", "orders.7")["token"]
    # The timeout only bounds the wait: both frames end the session.
    frames = session_while_publishing(host, token, "shipped", frames=2, timeout=30)
    assert kinds(frames) == ["subscribed", "message"]
    assert frames[1]["data"] == {"text": "shipped-0"}


def test_a_token_subscription_ends_when_its_token_expires(host):
    """Ended by the sidecar behind Apache, within its quarter-second check."""
    token = push_probe(host, "token", "orders.7", "--ttl", "2", "--subject", "user:7")["token"]
    answer = push_probe(
        host, "session", "orders.7", "--token", token, "--frames", "2", "--timeout", "10"
    )
    subscribed, expired = answer["frames"]
    assert subscribed["type"] == "subscribed" and 0 < subscribed["expires_in"] <= 3, subscribed
    assert expired == {"type": "expired", "channel": "orders.7", "reason": "token expired"}
    lasted = answer["times"][1] - answer["times"][0]
    assert lasted <= subscribed["expires_in"] + 0.75, lasted


def test_200_subscribers_get_every_message_once_in_order_across_reload_and_kill(host):
    """The app publishes 50 a second for 20 s; Apache reloads at 6 s and the
    sidecar is killed (kill -9) at 13 s; every subscriber resumes."""
    report = push_load(
        host,
        *("--clients", "200", "--rate", "50", "--seconds", "20"),
        *("--event", "6:systemctl reload apache2", "--event", f"13:{KILL_SIDECAR}"),
    )
    print(json.dumps({k: v for k, v in report.items() if k != "events"}))
    assert report["subscribed_before_publishing"] == 200
    assert [e["rc"] for e in report["events"]] == [0, 0], report["events"]
    # Both restarts cut every client's connection: each came back and resumed.
    assert report["reconnects_total"] >= 400, report
    assert report["published"] >= 0.98 * 1000, report["publish_failure_samples"]
    assert report["clients_with_problems"] == 0, report["problem_samples"]
    assert report["missing_total"] == report["duplicates_total"] == report["resets_total"] == 0


def test_a_redis_restart_loses_nothing_and_publishing_fails_fast_meanwhile(host):
    """Redis restarts (on its host) 4 s into publishing: the load marks the
    moment with a file, and the test restarts Redis there when it appears."""
    mark, out = "/opt/mws-test/restart-redis-now", "/opt/mws-test/redis-restart.json"
    host.run("rm -f %s", mark)
    load = ("--clients", "50", "--rate", "50", "--seconds", "12", f"--event=4:touch {mark}")
    push_load_in_background(host, out, *load)
    wait_for_file(host, mark, 90)
    assert redis_host(host).run("systemctl restart redis-server").rc == 0
    report = json.loads(wait_for_file(host, out, 120, cat=True))
    print(json.dumps({k: v for k, v in report.items() if k != "events"}))
    assert report["events"][0]["rc"] == 0
    # The WebSockets stayed open; clients were told the feed was interrupted.
    assert report["reconnects_total"] == 0, report
    assert "interrupted" in report["statuses_seen"], report
    assert report["clients_with_problems"] == 0, report["problem_samples"]
    assert report["missing_total"] == report["resets_total"] == 0
    for failure in report["publish_failure_samples"].values():
        assert failure["outcome"] == "http 503", failure
        assert failure["body"].startswith("cannot publish to push channel 'demo': Redis at"), (
            failure
        )
    assert report["slowest_publish_s"] < 2.5, report


def test_redis_killed_outright_while_publishing_loses_nothing_acknowledged(host):
    """kill -9 of Redis 4 s into publishing, then started again: every
    message publish() acknowledged reaches every subscriber, or the
    subscriber is told to reset; none misses one in silence."""
    mark, out = "/opt/mws-test/kill-redis-now", "/opt/mws-test/redis-kill.json"
    host.run("rm -f %s", mark)
    load = ("--clients", "50", "--rate", "50", "--seconds", "12", f"--event=4:touch {mark}")
    push_load_in_background(host, out, *load)
    wait_for_file(host, mark, 90)
    redis = redis_host(host)
    assert redis.run("pkill -9 -x redis-server").rc == 0
    assert redis.run("systemctl start redis-server").rc == 0
    report = json.loads(wait_for_file(host, out, 120, cat=True))
    print(json.dumps({k: v for k, v in report.items() if k != "events"}))
    assert report["published"] > 0 and report["subscribed_before_publishing"] == 50
    assert report["silently_missing_total"] == 0, report["problem_samples"]
    assert report["duplicates_total"] == 0, report["problem_samples"]


def test_when_redis_loses_its_data_a_returning_client_resets(host):
    before = push_probe(host, "session", "demo", "--publish", "before", "--frames", "2")
    epoch, seen = before["frames"][0]["epoch"], before["frames"][1]["id"]
    wiped = redis_host(host).run(
        "systemctl stop redis-server && rm -rf /var/lib/redis/appendonlydir /var/lib/redis/dump.rdb"
        " && systemctl start redis-server"
    )
    assert wiped.rc == 0, wiped.stderr
    deadline = time.monotonic() + 20
    while True:
        frames = push_probe(host, "session", "demo", f"--since={seen}", f"--epoch={epoch}")[
            "frames"
        ]
        if frames[0]["type"] not in ("refused", "status") or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # the sidecar is still reconnecting to Redis
    (reset,) = frames
    assert reset["type"] == "reset", frames
    assert reset["reason"] == "the history was lost (Redis started afresh)"
    assert reset["epoch"] != epoch


def test_publishing_while_redis_is_down_is_a_quick_clear_error(host):
    redis = redis_host(host)
    assert redis.run("systemctl stop redis-server").rc == 0
    try:
        stage_scripts(host, "push_probe.py")
        started = time.monotonic()
        answer = host.run(
            "python3 -c %s",
            REFUSED_PUBLISH,
        )
        took = time.monotonic() - started
    finally:
        assert redis.run("systemctl start redis-server").rc == 0
    assert answer.stdout.startswith("503 cannot publish to push channel 'demo': Redis at"), answer
    assert took < 5, took


def test_the_shared_secrets_are_readable_by_the_daemon_group_only(host):
    settings = host.file(SETTINGS)
    assert (settings.user, settings.group, settings.mode) == ("root", "www-data", 0o640)
    written = json.loads(settings.content_string)
    assert written["token_secret"] == TOKEN_SECRET
    assert written["redis"]["password"] == REDIS_PASSWORD


def test_check_mode_reports_no_change_on_a_converged_host(host, check_mode_changes):
    assert check_mode_changes[host.backend.host] == []
