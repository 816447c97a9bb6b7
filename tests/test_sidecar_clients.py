"""The client cap across the processes of one sidecar (files/mod_wsgi_ws_sidecar/clients.py).

The shared count's rules are proven with real processes: record locks never
conflict within one process, so every party here is a process of its own,
forked, as mod_wsgi forks a sidecar's daemon processes. The last tests run
the dashboard itself as two processes sharing one TCP port.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
import wsclient
from mod_wsgi_ws_sidecar import clients as sidecar_clients
from mod_wsgi_ws_sidecar import core
from mod_wsgi_ws_sidecar import dashboard as sidecar
from mod_wsgi_ws_sidecar.clients import LocalCount, SharedCount

# The directory holding the package, where `python -m` finds it.
FILES = Path(sidecar.__file__).resolve().parent.parent
FORK = multiprocessing.get_context("fork")
WAIT = 10.0


def test_one_process_admits_up_to_its_cap_and_takes_releases_back() -> None:
    count = LocalCount(3, room=100)
    assert [count.admit() for _ in range(4)] == [None, None, None, "cap"]
    count.release()
    assert count.admit() is None
    assert count.admit() == "cap"


def test_a_process_refuses_the_clients_it_has_no_descriptor_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for count in (LocalCount(100, room=2), SharedCount(str(tmp_path / "c"), 100, room=2)):
        assert [count.admit() for _ in range(4)] == [None, None, "files", "files"]
        # Room again, then full again: said again.
        count.release()
        assert [count.admit() for _ in range(2)] == [None, "files"]
        count.close()
    # Said once each time the process fills, not once per refused client.
    said = [r.message for r in caplog.records if "open-files limit" in r.message]
    assert (
        said
        == ["refusing clients: this process holds 2, as many as its open-files limit allows"] * 4
    )


def test_a_limit_lowered_on_the_running_process_counts_at_the_next_admission() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = LocalCount(10_000)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (sidecar_clients.FD_RESERVE + 2, hard))
        assert [count.admit() for _ in range(3)] == [None, None, "files"]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_release_after_close_is_ignored(tmp_path: Path) -> None:
    count = SharedCount(str(tmp_path / "c"), 5, room=100)
    assert count.admit() is None
    count.close()
    count.release()  # a handler that ends after the app's cleanup
    count.close()


def test_the_room_is_the_open_files_limit_less_a_reserve() -> None:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert sidecar_clients.fd_room(reserve=10) == max(1, soft - 10)


def _holder(path: str, max_clients: int, admits: int, conn: Connection) -> None:
    """A process of the sidecar: takes `admits` places, reports, holds until told."""
    count = SharedCount(path, max_clients, room=1000)
    conn.send((count.slot, [count.admit() for _ in range(admits)]))
    command = conn.recv()
    if command == "release":
        count.release()
        conn.send(count.total())
        conn.recv()
    elif command == "die":
        os._exit(0)  # no release, no close: as a kill -9 leaves it
    count.close()


@contextlib.contextmanager
def holder(path: Path, max_clients: int, admits: int) -> Iterator[tuple[Any, Connection, Any]]:
    ours, theirs = FORK.Pipe()
    process = FORK.Process(target=_holder, args=(str(path), max_clients, admits, theirs))
    process.start()
    try:
        assert ours.poll(WAIT), "the holder did not report"
        slot, results = ours.recv()
        yield process, ours, (slot, results)
    finally:
        if process.is_alive():
            with contextlib.suppress(OSError):
                ours.send("close")
            process.join(WAIT)
        if process.is_alive():
            process.kill()
            process.join(WAIT)


def test_processes_share_one_cap_exactly(tmp_path: Path) -> None:
    path = tmp_path / "s.clients"
    with holder(path, 5, 3) as (_, _, (slot_a, a)), holder(path, 5, 3) as (_, _, (slot_b, b)):
        assert slot_a != slot_b
        assert a == [None] * 3
        assert b == [None, None, "cap"]  # 3 + 2: the sidecar's cap, not each process's
        count = SharedCount(str(path), 5, room=1000)
        assert count.total() == 5
        assert count.admit() == "cap"
        count.close()


def test_a_release_in_one_process_makes_room_for_another(tmp_path: Path) -> None:
    path = tmp_path / "s.clients"
    with holder(path, 4, 4) as (_, conn, (_, results)):
        assert results == [None] * 4
        count = SharedCount(str(path), 4, room=1000)
        assert count.admit() == "cap"
        conn.send("release")
        assert conn.recv() == 3
        assert count.admit() is None
        assert count.total() == 4
        count.close()


def test_the_places_of_a_process_that_died_are_given_back(tmp_path: Path) -> None:
    path = tmp_path / "s.clients"
    count = SharedCount(str(path), 3, room=1000)
    with holder(path, 3, 3) as (process, conn, (_, results)):
        assert results == [None] * 3
        assert count.admit() == "cap"  # the holder is alive: its 3 count
        conn.send("die")
        process.join(WAIT)
        assert not process.is_alive()
        # Its slot still says 3, but no process owns it: the full sidecar looks again.
        assert count.total() == 3
        assert count.admit() is None
        assert count.total() == 1
    count.close()


def test_a_new_process_clears_what_dead_ones_left(tmp_path: Path) -> None:
    path = tmp_path / "s.clients"
    with holder(path, 10, 2) as (process, conn, (slot, _)):
        assert slot == 0
        conn.send("die")
        process.join(WAIT)
    with holder(path, 10, 0) as (_, _, (slot, _)):
        assert slot == 0  # the dead one's slot, reclaimed
        count = SharedCount(str(path), 10, room=1000)
        assert count.slot == 1
        assert count.total() == 0
        count.close()


def test_an_existing_file_of_another_size_is_grown_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "s.clients"
    path.write_bytes(b"\xff" * 16)  # a stale, short file
    count = SharedCount(str(path), 2, room=1000)
    assert path.stat().st_size == sidecar_clients.FILE_SIZE
    assert count.total() == 0  # the stale counts belonged to no live process
    count.close()


# --- the dashboard as two processes on one port ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dashboards(tmp_path: Path, processes: int, max_clients: int) -> Iterator[int]:
    port = free_port()
    config = tmp_path / "dash.json"
    config.write_text(
        json.dumps(
            {
                "name": "dash",
                "listen": {"host": "127.0.0.1", "port": port},
                "max_clients": max_clients,
                "poll_interval": 0.2,
                "processes": processes,
                "clients_file": str(tmp_path / "dash.clients"),
            }
        )
    )
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "mod_wsgi_ws_sidecar.dashboard", "--config", str(config)],
            cwd=FILES,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        deadline = time.monotonic() + WAIT
        while listeners(port) < processes:
            assert time.monotonic() < deadline, "the dashboards did not all listen"
            assert all(p.poll() is None for p in started), "a dashboard exited"
            time.sleep(0.05)
        yield port
    finally:
        for p in started:
            p.send_signal(signal.SIGTERM)
        for p in started:
            try:
                p.wait(WAIT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:port (state 0A in /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as fh:
        return sum(1 for line in fh if line.split()[1] == wanted and line.split()[3] == "0A")


def open_ws(port: int) -> tuple[socket.socket, int]:
    """A WebSocket to the dashboard, and the status its handshake got."""
    sock = socket.create_connection(("127.0.0.1", port), WAIT)
    status = wsclient.handshake(sock, "/ws").status
    if status != 101:
        sock.close()
    return sock, status


def test_two_dashboard_processes_share_a_port_and_one_cap(tmp_path: Path) -> None:
    cap, attempts = 40, 60
    with dashboards(tmp_path, processes=2, max_clients=cap) as port:
        answers = [open_ws(port) for _ in range(attempts)]
        opened = [sock for sock, status in answers if status == 101]
        try:
            assert sorted({status for _, status in answers}) == [101, 503]
            assert len(opened) == cap
            # The kernel spread them over both processes, and each process sends frames.
            per_slot = [n for n in sidecar_clients.slot_counts(str(tmp_path / "dash.clients")) if n]
            assert len(per_slot) == 2 and sum(per_slot) == cap, per_slot
            for sock in opened:
                kind, payload = wsclient.read_message(sock)
                assert kind == wsclient.TEXT and json.loads(payload)["type"] == "error"
        finally:
            for sock in opened:
                sock.close()
        # Every place comes back when the clients leave.
        deadline = time.monotonic() + WAIT
        while sum(sidecar_clients.slot_counts(str(tmp_path / "dash.clients"))):
            assert time.monotonic() < deadline, "places were not given back"
            time.sleep(0.05)
        sock, status = open_ws(port)
        sock.close()
        assert status == 101


def test_the_processes_take_turns_within_each_interval_numbered_alike(tmp_path: Path) -> None:
    interval = 0.2  # as dashboards() configures them
    ticks = 8  # read from each client
    with dashboards(tmp_path, processes=2, max_clients=100) as port:
        clients_file = str(tmp_path / "dash.clients")
        opened: list[socket.socket] = []
        try:
            # A socket is one process's: open them until each process holds one.
            while sum(map(bool, sidecar_clients.slot_counts(clients_file))) < 2:
                assert len(opened) < 64, "the kernel gave every client to one process"
                sock, status = open_ws(port)
                opened.append(sock)
                assert status == 101
            phases = set()
            for sock in opened:
                wsclient.read_message(sock)  # the latest, sent on connect
                # Each frame's own time (when its process ticked, however late it is
                # read) less the start of the interval its number names.
                offsets = []
                for _ in range(ticks):
                    frame = json.loads(wsclient.read_message(sock)[1])
                    offsets.append(frame["time"] - frame["seq"] * interval)
                # A tick is never early, but a busy machine runs any one of them late
                # (0.25 s has been seen): the most punctual of several is the process's
                # moment, within the interval numbered, and 0.1 s from the other's.
                assert all(offset > -0.01 for offset in offsets), offsets  # never early
                best = min(offsets)
                assert best < interval, offsets
                phases.add(min((0.0, interval / 2), key=lambda moment: abs(best - moment)))
        finally:
            for sock in opened:
                sock.close()
        assert phases == {0.0, interval / 2}, phases


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"processes": 0}, "'processes' must be an integer"),
        ({"processes": True}, "'processes' must be an integer"),
        ({"processes": sidecar_clients.MAX_PROCESSES + 1}, "'processes' must be an integer"),
        ({"processes": 2}, "needs 'clients_file'"),
        ({"clients_file": "relative"}, "'clients_file' must be an absolute path"),
        (
            {"processes": 2, "clients_file": "/run/x", "listen": {"path": "/run/s.sock"}},
            "needs a TCP listener",
        ),
    ],
)
def test_processes_settings_are_checked(data: dict[str, Any], message: str) -> None:
    with pytest.raises(core.ConfigError, match=message):
        sidecar.parse_config({"listen": {"host": "127.0.0.1", "port": 8765}, **data})
