"""The dashboard moved to an internal-only virtual host (a separate module:
its fixture converges the scenario away from the defaults and back)."""

import pytest
from conftest import REMOTE, converge, status

INTERNAL = "127.0.0.1:8081"


@pytest.fixture(scope="module")
def internal_only():
    """The dashboard moved to an internal-only virtual host, then back."""
    converge(
        {
            "mod_wsgi_ws_sidecar_internal_listen": INTERNAL,
            "mod_wsgi_ws_sidecar_sidecars": [
                {"name": "metrics-sidecar", "mount": "/metrics/", "port": 8765, "internal": True}
            ],
        }
    )
    yield
    converge()


def test_internal_dashboard_is_served_on_the_internal_host_only(probe, internal_only):
    port = {"port": INTERNAL.rsplit(":", 1)[1]}
    # The reload restarts the sidecar; it answers within a few seconds.
    answer = probe.ws_eventually("/metrics/ws", within=20, **port)
    assert answer["frames"][0]["data"]["type"] == "snapshot"
    assert "<title>Apache server metrics</title>" in probe.http("/metrics/", **port)["body"]
    # The public site no longer has it: its /metrics/ is the application's.
    assert "Hello from the WSGI application" in probe.http("/metrics/")["body"]
    assert status(probe.ws("/metrics/ws")) != 101
    # The allow-list still holds there.
    assert status(probe.http("/metrics/", **port, **REMOTE)) == 403


def test_internal_host_listens_on_its_address_only(host, internal_only):
    listening = host.check_output("ss -Htln")
    assert f" {INTERNAL} " in listening
    assert "0.0.0.0:8081" not in listening
