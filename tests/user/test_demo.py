"""scripts/demo.sh from the user's seat: the URL it prints opens.

The demo publishes the site on this machine's loopback and checks itself
the way the person will reach it: through that port, as a browser would
(the page, then live frames over the WebSocket). This test runs the demo
under a container name and port of its own, and checks that the dashboard
is still refused to anyone but this machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = f"{os.environ.get('MWS_CONTAINER_PREFIX', 'mws')}-demo-test"
PROBE = "/usr/local/share/mws-probe.py"
# The probe imports its WebSocket client from its own directory.
WSCLIENT = "/usr/local/share/wsclient.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[int, subprocess.CompletedProcess[str]]]:
    port = free_port()
    env = {**os.environ, "DEMO_NAME": NAME, "DEMO_PORT": str(port)}
    try:
        result = subprocess.run(
            [str(ROOT / "scripts/demo.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        yield port, result
    finally:
        subprocess.run(
            [str(ROOT / "scripts/demo.sh"), "destroy"], env=env, capture_output=True, check=False
        )


def test_demo_checks_its_printed_url_and_succeeds(demo) -> None:
    port, result = demo
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Dashboard:  http://127.0.0.1:{port}/metrics/" in result.stdout
    assert f"checking the dashboard at http://127.0.0.1:{port}/metrics/" in result.stderr


def test_published_on_this_machines_loopback_only(demo) -> None:
    port, _ = demo
    bound = subprocess.run(
        ["docker", "port", NAME, "80/tcp"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert bound == [f"127.0.0.1:{port}"]


def test_dashboard_refused_to_other_addresses(demo) -> None:
    # 127.0.0.2 inside the container stands in for any other machine.
    for source, staged in (("molecule/probe.py", PROBE), ("molecule/wsclient.py", WSCLIENT)):
        subprocess.run(["docker", "cp", str(ROOT / source), f"{NAME}:{staged}"], check=True)
    for kind, path in (("http", "/metrics/"), ("ws", "/metrics/ws")):
        answer = json.loads(
            subprocess.run(
                ["docker", "exec", NAME, "python3", PROBE, kind, path, "--source", "127.0.0.2"],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )
        refused = answer.get("status") == 403 or " 403 " in answer.get("handshake", "")
        assert refused, answer
    app = json.loads(
        subprocess.run(
            ["docker", "exec", NAME, "python3", PROBE, "http", "/", "--source", "127.0.0.2"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    assert app["status"] == 200
