"""A run that ends well means the site serves: right after a converge that
reloads Apache, the very first WebSocket gets its frames (it used to get a
503 while the sidecars started again)."""

import pytest
from conftest import ROLE, Probe, converge, scenario_hosts, status

HEADER = {"mod_wsgi_ws_sidecar_extra_directives": ["Header always set X-Readiness-Test 1"]}


@pytest.fixture(scope="module")
def first_websockets() -> dict:
    """Each of two reloading converges, then at once one WebSocket per host."""
    hosts = scenario_hosts()
    seen = {}
    for step, extra_vars in (("changed", HEADER), ("back", None)):
        changed = converge(extra_vars)
        seen[step] = {
            host.backend.host: {
                "reloaded": f"{ROLE} : Reload Apache (mod_wsgi_ws_sidecar)"
                in changed[host.backend.host],
                "first": Probe(host).ws("/metrics/ws", frames=1, timeout=5),
            }
            for host in hosts
        }
    return seen


@pytest.mark.parametrize("step", ["changed", "back"])
def test_first_websocket_after_a_reloading_converge_gets_frames(first_websockets, step):
    for name, seen in first_websockets[step].items():
        assert seen["reloaded"], name
        assert status(seen["first"]) == 101, (name, seen["first"])
        assert seen["first"]["frames"][0]["data"]["type"] == "snapshot", name
