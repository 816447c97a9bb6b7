"""What a user sees, whichever way mod_wsgi is wired: the tests every
deployment of the metrics dashboard at /metrics/ must pass, system Apache
(with or without a virtual environment) and mod_wsgi-express alike. A
scenario's test_shared.py imports them and defines the fixture
`deployment`: a dict of `service` (the systemd unit serving port 80),
`error_log` (its error log), `app_group` (the application's daemon process
group) and `python_prefix` (sys.prefix of the application and the sidecar:
the virtual environment, or /usr). Every
request stays on the container's loopback."""

import json
import time

from conftest import REMOTE, status

__all__ = [
    "test_another_local_user_is_refused_at_the_sidecars_listener",
    "test_application_answers_at_root_in_its_python",
    "test_bare_prefix_redirects_permanently",
    "test_check_mode_reports_no_change_on_a_converged_host",
    "test_dashboard_page_carries_the_prefix",
    "test_foreign_origin_is_refused_on_the_upgrade",
    "test_own_origin_is_served",
    "test_remote_client_is_refused_page_and_websocket",
    "test_restart_brings_the_sidecar_back",
    "test_sidecar_listens_on_loopback_only",
    "test_the_application_stays_open_to_all",
    "test_the_secret_stays_out_of_the_error_log",
    "test_websocket_through_the_front_end_streams_the_scoreboard",
]
SIDECAR_PORT = 8765
SETTINGS = "/etc/mod_wsgi_ws_sidecar/metrics-sidecar.json"
# Any local account on the host, outside the daemon processes' group.
LOCAL_USER = "mallory"
# The `deployment` of a site served by Debian's apache2.
ON_SYSTEM_APACHE = {
    "service": "apache2",
    "error_log": "/var/log/apache2/error.log",
    "app_group": "wsgi-app",
}


def test_application_answers_at_root_in_its_python(probe, deployment):
    answer = probe.http("/")
    assert answer["status"] == 200
    # Served by the application's daemon group (its name is the mode's), not the sidecar's.
    assert f"(process group: {deployment['app_group']})" in answer["body"]
    assert f" in {deployment['python_prefix']}\n" in answer["body"], answer["body"]


def test_bare_prefix_redirects_permanently(probe):
    answer = probe.http("/metrics")
    assert answer["status"] == 301
    assert answer["headers"]["Location"].endswith("/metrics/")


def test_dashboard_page_carries_the_prefix(host, probe):
    # The sidecar learns its prefix from X-Forwarded-Prefix, set by the front end.
    answer = probe.http("/metrics/")
    assert answer["status"] == 200
    assert answer["headers"]["Content-Type"].startswith("text/html")
    assert 'window.METRICS_BASE = "/metrics"' in answer["body"]
    direct = probe.http("/", port=SIDECAR_PORT, header=[f"X-Sidecar-Secret: {secret(host)}"])
    assert 'window.METRICS_BASE = ""' in direct["body"]


def secret(host) -> str:
    """The sidecar's secret, as root reads it from its settings."""
    return json.loads(host.file(SETTINGS).content_string)["secret"]


def test_another_local_user_is_refused_at_the_sidecars_listener(host, probe):
    # Apache's access rules guard the mount, not the sidecar's own loopback
    # port: there, only Apache's requests carry the sidecar's secret.
    assert host.run(f"id {LOCAL_USER} || useradd --no-create-home {LOCAL_USER}").rc == 0
    local_user = probe.as_user(LOCAL_USER)
    own_origin = f"Origin: http://127.0.0.1:{SIDECAR_PORT}"
    for header in ([], [own_origin], ["Origin: http://evil.example", "X-Sidecar-Secret: guess"]):
        assert status(local_user.http("/", port=SIDECAR_PORT, header=header)) == 403
        answer = local_user.ws("/ws", port=SIDECAR_PORT, header=header)
        assert status(answer) == 403, answer
        assert answer["frames"] == []
    # Through Apache the same user's requests are served: Apache adds the secret.
    assert local_user.ws("/metrics/ws")["handshake"].startswith("HTTP/1.1 101")


def test_the_secret_stays_out_of_the_error_log(host, probe, deployment):
    assert status(probe.http("/", port=SIDECAR_PORT, header=["X-Sidecar-Secret: guess"])) == 403
    deadline = time.monotonic() + 5
    while "not sent by Apache" not in (log := host.file(deployment["error_log"]).content_string):
        assert time.monotonic() < deadline, "the refusal was not logged"
        time.sleep(0.2)
    assert secret(host) not in log  # nothing ever logged the secret


def test_websocket_through_the_front_end_streams_the_scoreboard(probe):
    answer = probe.ws("/metrics/ws", frames=2, timeout=10)
    assert answer["handshake"].startswith("HTTP/1.1 101")
    first, second = (frame["data"] for frame in answer["frames"])
    assert first["type"] == "snapshot", first
    assert second["seq"] > first["seq"]
    assert second["summary"]["busy"] >= 1
    # The front end's worker tunnelling this very WebSocket shows up busy.
    tunnels = [w for w in second["workers"] if "/metrics/ws" in w["request"]]
    assert tunnels, second["workers"]
    assert all(w["state"] == "busy_write" for w in tunnels), tunnels


def test_sidecar_listens_on_loopback_only(host):
    listeners = host.check_output("ss -Hltn").splitlines()
    addresses = [line.split()[3] for line in listeners]
    on_port = [address for address in addresses if address.endswith(f":{SIDECAR_PORT}")]
    assert on_port == [f"127.0.0.1:{SIDECAR_PORT}"], listeners


def test_remote_client_is_refused_page_and_websocket(probe):
    # 127.0.0.2 stands for a remote client: the default allow-list is
    # 127.0.0.1 and ::1.
    assert status(probe.http("/metrics/", **REMOTE)) == 403
    assert status(probe.ws("/metrics/ws", **REMOTE)) == 403


def test_the_application_stays_open_to_all(probe):
    assert status(probe.http("/", **REMOTE)) == 200


def test_foreign_origin_is_refused_on_the_upgrade(probe):
    # Cross-site WebSocket hijacking: a page of another site opening our socket.
    answer = probe.ws("/metrics/ws", header=["Origin: http://evil.example"])
    assert status(answer) == 403
    assert answer["frames"] == []


def test_own_origin_is_served(probe):
    answer = probe.ws("/metrics/ws", header=["Origin: http://127.0.0.1"])
    assert status(answer) == 101
    assert answer["frames"][0]["data"]["type"] == "snapshot"


def test_check_mode_reports_no_change_on_a_converged_host(host, check_mode_changes):
    assert check_mode_changes[host.backend.host] == []


def test_restart_brings_the_sidecar_back(host, probe, deployment):
    assert host.service(deployment["service"]).is_enabled
    # Only this restart's lines count: earlier tests may have broken a sidecar on purpose.
    log_size = int(host.check_output("stat -c %%s %s", deployment["error_log"]))
    host.run_test("systemctl restart %s", deployment["service"])
    started = time.monotonic()
    answer = probe.ws_eventually("/metrics/ws", within=20)
    assert answer["frames"][0]["data"]["type"] == "snapshot"
    print(json.dumps({"sidecar_back_after_s": round(time.monotonic() - started, 2)}))
    # Restarts end the sidecar in an orderly way, never as a crash.
    log = host.check_output("tail -c +%s %s", str(log_size + 1), deployment["error_log"])
    assert "stopping: Apache is restarting or stopping" in log
    assert "serving loop died" not in log
