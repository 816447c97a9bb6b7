"""The user's own Starlette sidecar (uvicorn in a service script, unix socket,
mounted at /ws/) beside the metrics dashboard, checked from inside each
container. Apache's Timeout is 4 s here (molecule.yml); the echo sidecar's
ProxyPass has timeout=3600."""

import json

from conftest import (
    REMOTE,
    STAGE_DIR,
    enabled_apache_config,
    load,
    proxy_passes,
    staged_probe,
    status,
    wsgi_daemon_groups,
)

ECHO_SOCKET_DIR = "/run/mod_wsgi_ws_sidecar/echo"
# A dashboard stream held open across an echo exchange, ordered by files, not
# by timing: marks OPENED once its handshake is done, then reads snapshots (3
# at least) until one read after ECHOED (the echo's finished answer) appeared.
# Argument: the staging dir (wsclient.py), OPENED, ECHOED.
DASHBOARD_ACROSS_ECHO = """\
import json, os, socket, sys, time
sys.path.insert(0, sys.argv[1])
import wsclient
opened, echoed = sys.argv[2:]
deadline = time.monotonic() + 40
sock = socket.create_connection(("127.0.0.1", 80), 10)
answer = wsclient.handshake(sock, "/metrics/ws")
assert answer.status == 101, answer.status_line
opened_at = time.time()
open(opened, "w").close()
frames, after_echo = [], False
while len(frames) < 3 or not after_echo:
    assert time.monotonic() < deadline, f"{len(frames)} frames, echo answered: {after_echo}"
    # Looked at before the read: the frame read next comes after the echo.
    answered = os.path.exists(echoed)
    kind, payload = wsclient.read_message(sock)
    assert kind == wsclient.TEXT, (kind, payload)
    frames.append({"at": time.time(), "data": json.loads(payload)})
    after_echo = answered
wsclient.send_close(sock)
json.dump({"opened_at": opened_at, "frames": frames}, sys.stdout)
"""


def test_config_syntax_ok(host):
    result = host.run("apache2ctl -t")
    assert result.rc == 0, result.stderr


def test_only_the_metrics_group_may_read_the_scoreboard(host):
    groups = wsgi_daemon_groups(enabled_apache_config(host))
    assert "server-metrics=on" in groups["metrics-sidecar"].split()
    assert "server-metrics=off" in groups["echo"].split()
    assert "threads=0" in groups["echo"].split()
    assert "server-metrics=on" not in groups["wsgi-app"]


def test_echo_sidecar_gets_none_from_server_metrics(probe):
    # The app reports what mod_wsgi.server_metrics() gave it in its own process.
    answer = probe.http("/ws/")
    assert answer["status"] == 200
    expected = {"sidecar": "echo", "prefix": "/ws", "server_metrics": False}
    assert json.loads(answer["body"]) == expected


def test_metrics_sidecar_reads_the_scoreboard(probe):
    frames = probe.ws("/metrics/ws", frames=1, timeout=3)["frames"]
    assert frames[0]["data"]["type"] == "snapshot"
    assert frames[0]["data"]["summary"]["slots"] > 0


def test_both_sidecars_serve_at_once(host):
    # A dashboard stream and an echo exchange in flight at the same moment:
    # the echo starts once the stream is open, and the stream reads on until
    # the echo has answered (files, not timing, order the two).
    probe = staged_probe(host)
    both = host.run(
        "rm -f /tmp/metrics-open /tmp/echo.json; "
        "python3 -c %s %s /tmp/metrics-open /tmp/echo.json > /tmp/metrics.json & dashboard=$!; "
        "timeout 30 sh -c 'until test -e /tmp/metrics-open; do sleep 0.05; done' "
        "&& python3 %s ws /ws/echo --send concurrent --idle 1 --timeout 5 > /tmp/echo.json.part "
        "&& mv /tmp/echo.json.part /tmp/echo.json && wait $dashboard "
        "&& cat /tmp/metrics.json && echo && cat /tmp/echo.json",
        DASHBOARD_ACROSS_ECHO,
        STAGE_DIR,
        probe,
    )
    assert both.rc == 0, both.stderr
    metrics, echo = (json.loads(line) for line in both.stdout.splitlines())
    kinds = [frame["data"]["type"] for frame in metrics["frames"]]
    assert len(kinds) >= 3 and kinds == ["snapshot"] * len(kinds), kinds
    assert echo["frames"][0]["data"] == "concurrent"
    # The echo happened while the dashboard stream was open: after its
    # handshake and before its last frame.
    assert metrics["opened_at"] < echo["frames"][0]["at"] < metrics["frames"][-1]["at"]


def test_each_sidecar_has_its_own_access_rule(probe):
    # The dashboard admits this machine only; the echo sidecar is open to all.
    assert probe.http("/metrics/", **REMOTE)["status"] == 403
    assert status(probe.ws("/metrics/ws", **REMOTE)) == 403
    assert probe.http("/metrics/")["status"] == 200
    assert probe.ws("/ws/echo", send="from afar", **REMOTE)["frames"][0]["data"] == "from afar"


def test_echo_socket_is_closed_to_others(host, probe):
    assert host.file(ECHO_SOCKET_DIR).mode == 0o2750
    assert host.file(f"{ECHO_SOCKET_DIR}/sidecar.sock").is_socket
    refused = probe.as_user("nobody").unix_connect(f"{ECHO_SOCKET_DIR}/sidecar.sock")
    assert refused["error"].startswith("PermissionError"), refused


def test_echo_serves_only_requests_carrying_its_secret(host, probe):
    # The example's OnlyFromApache middleware: www-data may connect to the
    # socket, but not past the secret check that Apache's requests pass.
    socket = f"{ECHO_SOCKET_DIR}/sidecar.sock"
    secret = json.loads(host.file("/etc/mod_wsgi_ws_sidecar/echo.json").content_string)["secret"]
    www_data = probe.as_user("www-data")
    for header in ([], ["X-Sidecar-Secret: guess"]):
        assert status(www_data.http("/", unix=socket, header=header)) == 403
        refused = www_data.ws("/echo", unix=socket, send="sneaked", header=header)
        assert status(refused) == 403 and refused["frames"] == []
    served = probe.http("/", unix=socket, header=[f"X-Sidecar-Secret: {secret}"])
    assert json.loads(served["body"])["sidecar"] == "echo"


def test_proxy_timeout_is_on_the_echo_route_only(host):
    routes = proxy_passes(host).items()
    timeouts = {path: [w for w in words if w.startswith("timeout=")] for path, words in routes}
    assert timeouts == {"/metrics/": [], "/ws/": ["timeout=3600"]}
    assert "Timeout 4" in enabled_apache_config(host)


def test_idle_websocket_outlives_apache_timeout(probe):
    # Silent for 10 s, well past Timeout 4: only timeout=3600 keeps it open.
    answer = probe.ws("/ws/echo", send="still here", idle=10, timeout=15)
    assert answer["frames"][0]["data"] == "still here"
    assert answer["elapsed"] >= 10


def test_ordinary_request_keeps_the_general_timeout(probe):
    # A request whose body never arrives is given up after Timeout (4 s),
    # not after the WebSocket route's hour.
    answer = probe.stall("/", timeout=30)
    assert answer["closed"], answer
    assert 3 <= answer["elapsed"] < 10, answer


def test_echo_holds_its_max_clients_and_refuses_the_rest(host):
    # Both sidecars' clients fit in any one Apache child (ProxyPass max= is
    # the whole max_clients), so however the connections spread over the
    # children, all 50 get through; the app itself refuses client 51.
    report = load(host, "ws://127.0.0.1/ws/echo", clients=50, excess=50)
    held, excess, http = report["held"], report["excess"], report["http"]
    assert (held["connected"], held["refused"], held["hung"], held["errors"]) == (50, 0, 0, 0)
    assert (excess["connected"], excess["refused"], excess["hung"]) == (0, 50, 0)
    assert excess["refuse_seconds_max"] < 1
    assert http["failed"] == 0 and http["ok"] > 0


def test_each_route_is_bounded_per_child_at_its_max_clients(host):
    routes = proxy_passes(host).items()
    pools = {path: [w for w in words if w.startswith("max=")] for path, words in routes}
    assert pools == {"/metrics/": ["max=20"], "/ws/": ["max=50"]}


def test_check_mode_reports_no_change_on_a_converged_host(host, check_mode_changes):
    assert check_mode_changes[host.backend.host] == []
