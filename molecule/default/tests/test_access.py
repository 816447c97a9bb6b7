"""Who may reach the dashboard with the role's defaults: this machine only.
127.0.0.2 stands for a remote client (Apache's `Require ip 127.0.0.1 ::1`
does not match it), and every request stays on the container's loopback."""

from conftest import REMOTE, status


def test_remote_client_is_refused_page_and_websocket(probe):
    assert status(probe.http("/metrics/", **REMOTE)) == 403
    assert status(probe.ws("/metrics/ws", **REMOTE)) == 403


def test_local_client_gets_page_and_websocket(probe):
    assert status(probe.http("/metrics/")) == 200
    answer = probe.ws("/metrics/ws")
    assert status(answer) == 101
    assert answer["frames"][0]["data"]["type"] == "snapshot"


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
