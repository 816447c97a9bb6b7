"""Who else listens where a sidecar would (plugins/module_utils/port_holders.py),
against real listening sockets on this machine."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils import port_holders


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_another_program_listening_on_loopback_is_named(listening: socket.socket) -> None:
    port = listening.getsockname()[1]
    (held,) = port_holders.holders([port])[str(port)]
    assert held.endswith(f"(pid {port_holders.os.getpid()})")
    assert "python" in held or "pytest" in held


def test_a_wildcard_listener_counts_and_another_address_does_not() -> None:
    port = free_port()
    with socket.socket() as wildcard:
        wildcard.bind(("0.0.0.0", port))
        wildcard.listen()
        assert port_holders.holders([port])[str(port)]
    other = free_port()
    with socket.socket() as elsewhere:
        elsewhere.bind(("127.0.0.2", other))
        elsewhere.listen()
        assert port_holders.holders([other]) == {str(other): []}


def test_a_bound_socket_that_does_not_listen_is_no_holder() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        assert port_holders.holders([port]) == {str(port): []}


@pytest.mark.parametrize(
    ("title", "named"), [("(wsgi:metrics-sidecar)", False), ("squatter", True)]
)
def test_mod_wsgi_daemon_processes_are_left_out(title: str, named: bool) -> None:
    # mod_wsgi titles its daemon processes "(wsgi:GROUP)"; exec -a does the same here.
    port = free_port()
    serve = (
        f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen();"
        " print('ready', flush=True); time.sleep(30)"
    )
    process = subprocess.Popen(
        ["bash", "-c", 'exec -a "$2" "$0" -c "$1"', sys.executable, serve, title],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        held = port_holders.holders([port])[str(port)]
        expected = [f"{title} -c {serve} (pid {process.pid})"] if named else []
        assert held == expected
    finally:
        process.kill()
        process.wait()


def test_ports_nobody_holds_give_empty_lists() -> None:
    port = free_port()
    assert port_holders.holders([port, port + 1 if port < 65535 else port - 1]) == {
        str(port): [],
        str(port + 1 if port < 65535 else port - 1): [],
    }
