"""HTTPS for the site and both sidecars, plain HTTP redirected, and a sidecar
owning the whole of ws.example.test; checked from inside each container with
the scenario's self-signed certificate as the only trust anchor."""

from conftest import enabled_apache_config

CA = "/etc/ssl/certs/example.test.pem"
WS_HOST = "ws.example.test"
TLS = {"tls": True, "cafile": CA}


def test_ssl_and_rewrite_modules_enabled(host):
    modules = host.check_output("apache2ctl -M")
    assert "ssl_module" in modules
    assert "rewrite_module" in modules


def test_config_syntax_ok(host):
    result = host.run("apache2ctl -t")
    assert result.rc == 0, result.stderr


def test_only_modern_tls_protocols(host, probe):
    config = enabled_apache_config(host)
    assert config.count("SSLProtocol -all +TLSv1.2 +TLSv1.3") == 2
    assert probe.http("/", tls_only="TLSv1_2", **TLS)["status"] == 200
    # The server's alert, not the client's own policy, ends a TLS 1.1 handshake.
    refused = probe.http("/", tls_only="TLSv1_1", **TLS)
    assert refused == {"tls_error": "TLSV1_ALERT_PROTOCOL_VERSION"}


def test_plain_http_redirects_to_the_same_url_over_https(probe):
    answer = probe.http("/metrics/?view=1")
    assert answer["status"] == 301
    assert answer["headers"]["Location"] == "https://127.0.0.1/metrics/?view=1"
    answer = probe.http("/ws", host_header=WS_HOST)
    assert answer["status"] == 301
    assert answer["headers"]["Location"] == f"https://{WS_HOST}/ws"


def test_wsgi_app_over_https(probe):
    answer = probe.http("/", **TLS)
    assert answer["status"] == 200
    assert "process group: wsgi-app" in answer["body"]
    assert answer["tls_version"] in ("TLSv1.2", "TLSv1.3")


def test_wss_through_apache_at_the_mount(probe):
    answer = probe.ws("/metrics/ws", frames=2, timeout=10, **TLS)
    assert answer["handshake"].startswith("HTTP/1.1 101")
    assert [frame["data"]["type"] for frame in answer["frames"]] == ["snapshot", "snapshot"]


def test_dashboard_at_the_mount_carries_its_prefix(probe):
    answer = probe.http("/metrics/", **TLS)
    assert 'window.METRICS_BASE = "/metrics"' in answer["body"]


def test_virtual_host_serves_the_sidecar_without_prefix(probe):
    answer = probe.http("/", host_header=WS_HOST, **TLS)
    assert answer["status"] == 200
    assert 'window.METRICS_BASE = ""' in answer["body"]


def test_virtual_host_drops_a_client_sent_prefix(probe):
    answer = probe.http("/", host_header=WS_HOST, header=["X-Forwarded-Prefix: /evil"], **TLS)
    assert 'window.METRICS_BASE = ""' in answer["body"]


def test_wss_through_the_virtual_host(probe):
    answer = probe.ws("/ws", frames=2, timeout=10, host_header=WS_HOST, **TLS)
    assert answer["handshake"].startswith("HTTP/1.1 101")
    assert [frame["data"]["type"] for frame in answer["frames"]] == ["snapshot", "snapshot"]


def test_virtual_host_owns_its_whole_url_space(probe):
    # /metrics/ there is the sidecar's own URL space, not the main site's.
    assert probe.http("/metrics/", host_header=WS_HOST, **TLS)["status"] == 404
    # The main site keeps serving the WSGI application.
    assert probe.http("/", host_header="localhost", **TLS)["status"] == 200


def test_each_sidecar_has_its_own_loopback_port(host):
    addresses = [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()]
    assert "127.0.0.1:8765" in addresses
    assert "127.0.0.1:8766" in addresses


def test_check_mode_reports_no_change_on_a_converged_host(host, check_mode_changes):
    assert check_mode_changes[host.backend.host] == []
