"""The dashboard on a unix socket, checked from inside each container: the
socket and its directory are closed to everyone but the sidecar and Apache,
there is no TCP listener, and the WebSocket works through Apache."""

import time

from conftest import enabled_apache_config, status

SOCKET_DIR = "/run/mod_wsgi_ws_sidecar/metrics-sidecar"
SOCKET = f"{SOCKET_DIR}/sidecar.sock"
TMPFILES = "/etc/tmpfiles.d/mod_wsgi_ws_sidecar.conf"


def test_config_syntax_ok(host):
    result = host.run("apache2ctl -t")
    assert result.rc == 0, result.stderr


def test_apache_proxies_to_the_socket(host):
    config = enabled_apache_config(host)
    proxy = f'ProxyPass        /metrics/ "unix:{SOCKET}|http://localhost/" upgrade=websocket'
    assert proxy in config


def test_socket_directory_is_closed_to_others(host):
    directory = host.file(SOCKET_DIR)
    assert directory.is_directory
    assert (directory.user, directory.group) == ("www-data", "www-data")
    # setgid: the socket inherits Apache's group whoever the sidecar runs as.
    assert directory.mode == 0o2750


def test_socket_owner_and_mode(host):
    socket_file = host.file(SOCKET)
    assert socket_file.is_socket
    assert (socket_file.user, socket_file.group) == ("www-data", "www-data")
    assert socket_file.mode == 0o660


def test_sidecar_listens_on_the_socket_and_no_tcp_port(host):
    assert SOCKET in host.check_output("ss -Hlx")
    tcp = [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()]
    assert [address for address in tcp if not address.endswith(":80")] == [], tcp


def test_unprivileged_user_cannot_connect(probe):
    # The same probe as the Apache user connects, so the refusal is the
    # permissions' doing and not a dead socket.
    assert probe.as_user("www-data").unix_connect(SOCKET) == {"connected": True}
    refused = probe.as_user("nobody").unix_connect(SOCKET)
    assert refused["connected"] is False
    assert refused["error"].startswith("PermissionError"), refused


def test_the_daemons_own_user_without_the_secret_is_refused(probe):
    # The socket's directory admits Apache's user, which the application runs
    # as too: the sidecar still serves only requests carrying its secret.
    www_data = probe.as_user("www-data")
    assert status(www_data.http("/", unix=SOCKET)) == 403
    answer = www_data.ws("/ws", unix=SOCKET, header=["Origin: http://localhost"])
    assert status(answer) == 403
    assert answer["frames"] == []


def test_websocket_through_apache(probe):
    answer = probe.ws("/metrics/ws", frames=2, timeout=10)
    assert answer["handshake"].startswith("HTTP/1.1 101")
    assert [frame["data"]["type"] for frame in answer["frames"]] == ["snapshot", "snapshot"]


def test_dashboard_page_through_apache(probe):
    answer = probe.http("/metrics/")
    assert answer["status"] == 200
    assert 'window.METRICS_BASE = "/metrics"' in answer["body"]


def test_stale_socket_from_a_killed_sidecar_does_not_block_its_restart(host, probe):
    # kill -9 leaves the socket file behind; mod_wsgi starts a new process,
    # which must bind the same path.
    host.run_test("pkill -KILL -f '^[(]wsgi:metrics-sid'")
    assert host.file(SOCKET).exists
    started = time.monotonic()
    probe.ws_eventually("/metrics/ws", within=20)
    assert time.monotonic() - started < 20
    assert host.file(SOCKET).mode == 0o660


def test_boot_recreates_the_socket_directory(host, probe):
    # /run is empty after a boot: systemd-tmpfiles must bring the directory
    # back, with its mode, before Apache starts.
    assert f"d {SOCKET_DIR} 2750 www-data www-data -" in host.file(TMPFILES).content_string
    host.run_test("systemctl stop apache2")
    host.run_test(f"rm -rf {SOCKET_DIR}")
    host.run_test(f"systemd-tmpfiles --create {TMPFILES}")
    assert host.file(SOCKET_DIR).mode == 0o2750
    host.run_test("systemctl start apache2")
    probe.ws_eventually("/metrics/ws", within=20)
