"""The sidecar over real sockets: HTTP, WebSocket fan-out, slow clients, process death.

Each test is a plain function driving a coroutine with asyncio.run, every scenario is
bounded by a timeout, and poll intervals are small so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import stat
import struct
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sidecar
import sidecar_trends
import wsclient
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

SCENARIO_TIMEOUT = 15.0
SYNTHETIC = json.loads(
    (Path(__file__).resolve().parent / "fixtures" / "scoreboard-synthetic.json").read_text()
)


def run(coro: Awaitable[Any], timeout: float = SCENARIO_TIMEOUT) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def serving(
    source: sidecar.MetricsSource = lambda: SYNTHETIC, **config: Any
) -> AsyncIterator[tuple[sidecar.Sidecar, TestClient]]:
    config.setdefault("poll_interval", 0.05)
    sc = sidecar.Sidecar(sidecar.Config(**config), source)
    async with TestClient(TestServer(sc.app)) as client:
        yield sc, client


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 1.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def collect(
    ws: aiohttp.ClientWebSocketResponse, duration: float
) -> list[tuple[float, dict[str, Any]]]:
    """(arrival time, frame) for every frame received within `duration` seconds."""
    frames = []
    deadline = time.monotonic() + duration
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append((time.monotonic(), await frame(ws, timeout=left)))
        except TimeoutError:
            break
    return frames


def max_gap(frames: list[tuple[float, dict[str, Any]]]) -> float:
    arrivals = [arrived for arrived, _ in frames]
    return max(b - a for a, b in itertools.pairwise(arrivals))


async def raw_upgrade(port: int, rcvbuf: int | None = None) -> socket.socket:
    """A WebSocket client of our own: handshake, then the test decides whether to read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)

    def upgrade() -> wsclient.Response:
        sock.connect(("127.0.0.1", port))
        return wsclient.handshake(sock, "/ws", host=f"127.0.0.1:{port}")

    # wsclient blocks: in a thread, so that this loop goes on serving the handshake.
    answer = await asyncio.to_thread(upgrade)
    assert answer.status == 101, answer
    sock.setblocking(False)  # for the loop's sock_recv; nothing past the head was read
    return sock


def busy_scoreboard(workers: int = 40) -> dict[str, Any]:
    """A scoreboard whose digest is ~10 KB, to fill a stalled socket quickly."""
    board = json.loads(json.dumps(SYNTHETIC))
    template = board["processes"][0]["workers"][0]
    board["thread_limit"] = workers
    for proc in board["processes"]:
        proc["workers"] = [
            dict(template, thread_num=j, request=f"GET /slow/{j}/{'x' * 150} HTTP/1.1")
            for j in range(workers)
        ]
    return board


# --- HTTP ----------------------------------------------------------------------------------


def test_index_without_prefix() -> None:
    async def scenario() -> None:
        async with serving() as (_, client):
            resp = await client.get("/")
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert resp.headers["Cache-Control"] == "no-store"
            html = await resp.text()
            assert 'window.METRICS_BASE = "";' in html
            assert 'id="workers"' in html

    run(scenario())


@pytest.mark.parametrize("header", ["/metrics", "/metrics/"])
def test_index_with_forwarded_prefix(header: str) -> None:
    async def scenario() -> None:
        async with serving() as (_, client):
            resp = await client.get("/", headers={"X-Forwarded-Prefix": header})
            assert 'window.METRICS_BASE = "/metrics"' in await resp.text()

    run(scenario())


def test_index_with_hostile_prefix() -> None:
    async def scenario() -> None:
        async with serving() as (_, client):
            hostile = "/m</script><script>alert(1)</script>"
            resp = await client.get("/", headers={"X-Forwarded-Prefix": hostile})
            html = await resp.text()
            assert "<script>alert(1)" not in html
            assert r"\u003c/script\u003e\u003cscript\u003ealert(1)" in html

    run(scenario())


# --- WebSocket frames ----------------------------------------------------------------------


def test_a_page_gets_the_last_ticks_when_it_asks_with_query_strings_hidden() -> None:
    scoreboard = json.loads(json.dumps(SYNTHETIC))
    scoreboard["processes"][0]["workers"][1]["request"] = "GET /login?token=s3cr3t HTTP/1.1"
    route = sidecar_trends.Route("metrics", 2, path="/metrics/ws")

    async def first_frames(**config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        async with serving(lambda: scoreboard, routes=(route,), **config) as (sc, client):
            await wait_until(lambda: len(sc.trends.points) >= 3)
            ws = await client.ws_connect("/ws")
            snapshot = await frame(ws)
            # Only a client that asks (the page) gets the history, and only once.
            for _ in range(2):
                await ws.send_str(sidecar.HISTORY_REQUEST)
            frames = [f for _, f in await collect(ws, 0.3)]
            await ws.close()
            assert [f["type"] for f in frames].count("history") == 1
            return next(f for f in frames if f["type"] == "history"), snapshot

    history, snapshot = run(first_frames())
    assert history["type"] == "history" and history["sidecars"] == [
        {"name": "metrics", "max_clients": 2}
    ]
    assert len(history["points"]) >= 3 and history["points"][-1][4] == [1]
    assert snapshot["sidecars"] == [
        {"name": "metrics", "websockets": 1, "max_clients": 2, "near_cap": False}
    ]
    shown = [w["request"] for w in snapshot["workers"]]
    assert "GET /login?[redacted] HTTP/1.1" in shown and "s3cr3t" not in json.dumps(snapshot)
    _, whole = run(first_frames(show_query_strings=True))
    assert "GET /login?token=s3cr3t HTTP/1.1" in [w["request"] for w in whole["workers"]]


def test_snapshot_sent_on_connect_then_every_tick() -> None:
    async def scenario() -> None:
        async with serving(poll_interval=0.5) as (sc, client):
            await wait_until(lambda: sc.latest is not None)
            started = time.monotonic()
            ws = await client.ws_connect("/ws")
            first = await frame(ws, timeout=0.4)
            assert time.monotonic() - started < 0.4  # did not wait for the next tick
            assert first["type"] == "snapshot"
            assert first["summary"]["workers"]["busy_write"] == 1
            assert first["workers"][0]["request"] == "GET /metrics/ws HTTP/1.1"
            assert abs(first["time"] - time.time()) < 5
            second = await frame(ws, timeout=1.5)
            third = await frame(ws, timeout=1.5)
            assert [second["seq"], third["seq"]] == [first["seq"] + 1, first["seq"] + 2]
            assert 0.3 < third["time"] - second["time"] < 0.7
            await ws.close()

    run(scenario())


def test_ticks_fall_on_the_multiples_of_the_interval_and_are_numbered_by_them() -> None:
    # So the processes of one sidecar number their ticks alike (tests of
    # two processes taking turns: tests/test_sidecar_clients.py).
    async def scenario() -> None:
        async with serving(poll_interval=0.25) as (_, client):
            ws = await client.ws_connect("/ws")
            await frame(ws)  # the first comes at once, wherever the clock is
            frames = [await frame(ws) for _ in range(4)]
            for f in frames:
                # Read within the interval it is numbered by (late under load; a
                # hair early too: asyncio's clock is not the wall clock).
                assert -0.01 < f["time"] - f["seq"] * 0.25 < 0.25, f
            assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + 4))
            await ws.close()

    run(scenario())


def test_ticks_keep_a_fixed_cadence() -> None:
    def slow_source() -> dict[str, Any]:
        time.sleep(0.05)  # work inside the tick must not push later ticks back
        return SYNTHETIC

    async def scenario() -> None:
        async with serving(slow_source, poll_interval=0.1) as (_, client):
            ws = await client.ws_connect("/ws")
            await frame(ws)
            frames = [await frame(ws) for _ in range(10)]
            # 9 intervals: 0.9 s on a fixed cadence, >= 1.35 s if the work added up
            span = frames[-1]["time"] - frames[0]["time"]
            assert 0.75 < span < 1.1, span
            first_seq = frames[0]["seq"]
            assert [f["seq"] for f in frames] == list(range(first_seq, first_seq + 10))

    run(scenario())


@pytest.mark.parametrize(("stall", "step"), [(0.6, 1), (1.0, 2)])
def test_a_tick_that_overruns_runs_the_next_late_or_skips_what_it_missed(
    stall: float, step: int
) -> None:
    # Interval 0.4 s; one reading takes `stall`: 1.5 intervals and the tick
    # it overran runs at once, late; 2.5 and the one it overran is skipped
    # (only the latest due runs: no burst).
    calls = itertools.count()

    def stalling_source() -> dict[str, Any]:
        if next(calls) == 4:
            time.sleep(stall)
        return SYNTHETIC

    async def scenario() -> None:
        async with serving(stalling_source, poll_interval=0.4) as (_, client):
            ws = await client.ws_connect("/ws")
            frames = [f for _, f in await collect(ws, 4.0)]
            steps = [b["seq"] - a["seq"] for a, b in itertools.pairwise(frames)]
            # Never two frames numbered alike, never a number going back.
            assert step in steps and set(steps) <= {1, step}, steps

    run(scenario())


def test_missing_scoreboard_sends_error_frame() -> None:
    async def scenario() -> None:
        async with serving(lambda: None) as (_, client):
            ws = await client.ws_connect("/ws")
            for _ in range(2):
                payload = await frame(ws)
                assert payload["type"] == "error"
                assert payload["error"] == sidecar.SCOREBOARD_UNAVAILABLE

    run(scenario())


def test_raising_source_sends_error_frame_and_loop_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def flaky() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if 3 <= calls <= 5:
            raise OSError("scoreboard went away")
        return SYNTHETIC

    async def scenario() -> list[dict[str, Any]]:
        async with serving(flaky, poll_interval=0.02) as (_, client):
            ws = await client.ws_connect("/ws")
            return [payload for _, payload in await collect(ws, 0.5)]

    with caplog.at_level(logging.INFO, logger="sidecar"):
        payloads = run(scenario())
    kinds = [p["type"] for p in payloads]
    assert "error" in kinds
    assert kinds[-1] == "snapshot"  # recovered after the failures
    errors = [p for p in payloads if p["type"] == "error"]
    assert errors[0]["error"] == "scoreboard read failed: OSError('scoreboard went away')"
    seqs = [p["seq"] for p in payloads]
    assert seqs == sorted(seqs)
    # logged once when it broke and once when it recovered, not on every tick
    failures = [r for r in caplog.records if "scoreboard read failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info
    assert any("readable again" in r.getMessage() for r in caplog.records)


def test_client_messages_are_ignored() -> None:
    async def scenario() -> None:
        async with serving() as (_, client):
            ws = await client.ws_connect("/ws")
            await frame(ws)
            await ws.send_str("hello")
            await ws.send_bytes(b"\x00\x01")
            assert (await frame(ws))["type"] == "snapshot"
            assert (await frame(ws))["type"] == "snapshot"

    run(scenario())


def test_plain_get_on_ws_route_is_rejected() -> None:
    async def scenario() -> None:
        async with serving(max_clients=1) as (sc, client):
            resp = await client.get("/ws")
            assert resp.status == 400
            assert sc.cap.mine == 0
            ws = await client.ws_connect("/ws")  # the failed attempt did not use up the slot
            await frame(ws)

    run(scenario())


# --- client failures -----------------------------------------------------------------------


def test_abrupt_disconnect_does_not_disturb_other_clients() -> None:
    async def scenario() -> None:
        async with serving() as (sc, client):
            healthy = await client.ws_connect("/ws")
            await frame(healthy)
            goners = [await raw_upgrade(client.server.port) for _ in range(3)]
            await wait_until(lambda: len(sc.clients) == 4)
            for sock in goners:  # RST, no close frame
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            await wait_until(lambda: len(sc.clients) == 1)
            frames = await collect(healthy, 0.5)
            assert len(frames) >= 5
            assert max_gap(frames) < 0.4
            assert sc.tick_task is not None and not sc.tick_task.done()

    run(scenario())


async def stalled_client_scenario(
    **config: Any,
) -> tuple[list[tuple[float, dict[str, Any]]], float]:
    """A healthy client and one that never reads; returns the healthy frames and drop delay."""
    async with serving(lambda: busy_scoreboard(), poll_interval=0.05, **config) as (sc, client):
        healthy = await client.ws_connect("/ws")
        await frame(healthy)
        stalled = await raw_upgrade(client.server.port, rcvbuf=4096)
        await wait_until(lambda: len(sc.clients) == 2)
        # Shrink the server-side kernel buffer so the stall reaches the transport quickly.
        local = stalled.getsockname()
        for registered in sc.clients:
            if registered.transport.get_extra_info("peername") == local:
                raw = registered.transport.get_extra_info("socket")
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        started = time.monotonic()
        frames: list[tuple[float, dict[str, Any]]] = []
        while len(sc.clients) == 2:
            assert time.monotonic() - started < 8, "stalled client was never dropped"
            frames += await collect(healthy, 0.1)
        dropped_after = time.monotonic() - started
        frames += await collect(healthy, 0.5)  # keeps flowing after the drop
        await assert_closed_by_server(stalled)
        stalled.close()
        return frames, dropped_after


async def assert_closed_by_server(sock: socket.socket, timeout: float = 3.0) -> None:
    """Read what the server had queued; the connection must end (it was aborted)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "server kept the dropped connection open"
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        except ConnectionResetError:
            return
        except TimeoutError:
            continue
        if not chunk:
            return


def test_stalled_client_dropped_by_send_timeout(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        frames, dropped_after = run(
            stalled_client_scenario(send_timeout=0.2, max_send_buffer=1 << 30)
        )
    assert any("data unsent for longer than 0.2s" in r.getMessage() for r in caplog.records)
    assert dropped_after < 6
    # no tick ever waits for the stalled client: it is dropped after 0.2 s of backlog
    assert max_gap(frames) < 0.4
    assert len(frames) >= (dropped_after + 0.5) / 0.05 * 0.4


def test_stalled_client_dropped_by_buffer_limit(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        frames, dropped_after = run(
            stalled_client_scenario(send_timeout=5.0, max_send_buffer=16384)
        )
    assert any("bytes still unsent" in r.getMessage() for r in caplog.records)
    assert dropped_after < 6
    # the healthy client never waited on the stalled one (send_timeout is 5 s)
    assert max_gap(frames) < 0.4
    assert len(frames) >= (dropped_after + 0.5) / 0.05 * 0.4


def test_max_clients_refused_with_503() -> None:
    async def scenario() -> None:
        async with serving(max_clients=2) as (sc, client):
            first = await client.ws_connect("/ws")
            second = await client.ws_connect("/ws")
            with pytest.raises(aiohttp.WSServerHandshakeError) as excinfo:
                await client.ws_connect("/ws")
            assert excinfo.value.status == 503
            await frame(first)
            await second.close()
            await wait_until(lambda: len(sc.clients) == 1)
            third = await client.ws_connect("/ws")
            await frame(third)

    run(scenario())


def test_foreign_origin_refused_with_403_and_own_origin_served() -> None:
    async def scenario() -> None:
        async with serving() as (sc, client):
            own = f"http://{client.host}:{client.port}"
            with pytest.raises(aiohttp.WSServerHandshakeError) as excinfo:
                await client.ws_connect("/ws", origin="http://evil.example")
            assert excinfo.value.status == 403
            assert not sc.clients
            ws = await client.ws_connect("/ws", origin=own)
            assert (await frame(ws))["type"] == "snapshot"

    run(scenario())


SECRET = "s3cr3t-" * 6


@pytest.mark.parametrize("presented", [None, "", "wrong-" * 8, SECRET[:-1]])
def test_request_without_the_secret_refused_before_any_frame(
    presented: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        headers = {} if presented is None else {sidecar.SECRET_HEADER: presented}
        async with serving(secret=SECRET) as (sc, client):
            page = await client.get("/", headers=headers)
            assert page.status == 403
            assert "METRICS_BASE" not in await page.text()
            for origin in (None, f"http://{client.host}:{client.port}"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as excinfo:
                    await client.ws_connect("/ws", headers=headers, origin=origin)
                assert excinfo.value.status == 403
            assert not sc.clients

    with caplog.at_level(logging.WARNING, logger="sidecar"):
        run(scenario())
    assert "not sent by Apache" in caplog.text
    assert SECRET not in caplog.text


def test_request_with_the_secret_served() -> None:
    async def scenario() -> None:
        headers = {sidecar.SECRET_HEADER: SECRET}
        async with serving(secret=SECRET) as (_sc, client):
            page = await client.get("/", headers=headers)
            assert page.status == 200
            ws = await client.ws_connect("/ws", headers=headers)
            assert (await frame(ws))["type"] == "snapshot"

    run(scenario())


# --- serve() and run_service() -------------------------------------------------------------


@pytest.fixture
def sock_dir() -> Any:
    # tmp_path can exceed the 108-byte AF_UNIX path limit; keep it short.
    with tempfile.TemporaryDirectory(prefix="sc") as path:
        yield Path(path)


def test_serve_on_unix_socket(sock_dir: Path) -> None:
    path = sock_dir / "sidecar.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a leftover socket file from a dead process
    stale.close()

    async def scenario() -> None:
        config = sidecar.Config(path=str(path), poll_interval=0.05)
        stop = asyncio.Event()
        server = asyncio.create_task(sidecar.serve(config, lambda: SYNTHETIC, stop))
        await wait_until(lambda: path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o660)
        await asyncio.sleep(0.05)
        connector = aiohttp.UnixConnector(path=str(path))
        async with aiohttp.ClientSession(connector=connector) as session:
            resp = await session.get("http://localhost/")
            assert 'window.METRICS_BASE = ""' in await resp.text()
            ws = await session.ws_connect("http://localhost/ws")
            assert (await frame(ws))["type"] == "snapshot"
            stop.set()
            await asyncio.wait_for(server, 5)  # returns cleanly, dropping the client
            # Ticks already sent before the stop may come first; then the end.
            while (msg := await ws.receive(timeout=2)).type == WSMsgType.TEXT:
                pass
            assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR), msg

    run(scenario())


@pytest.mark.parametrize("fault", ["removed", "replaced"])
def test_serve_ends_when_its_socket_file_is_lost(
    sock_dir: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sidecar, "SOCKET_CHECK_INTERVAL", 0.05)
    path = sock_dir / "sidecar.sock"

    async def scenario() -> None:
        config = sidecar.Config(path=str(path), poll_interval=0.05)
        server = asyncio.create_task(sidecar.serve(config, lambda: SYNTHETIC))
        await wait_until(lambda: path.exists())
        await asyncio.sleep(0.2)
        assert not server.done()  # its own socket: serving on
        path.unlink()
        if fault == "replaced":
            with socket.socket(socket.AF_UNIX) as other:
                other.bind(str(path))
        with pytest.raises(RuntimeError, match="removed or replaced"):
            await asyncio.wait_for(server, 2)

    run(scenario())


class Exited(Exception):
    pass


def fake_exit(code: int) -> Any:
    raise Exited(code)


class Die(BaseException):
    """Escapes the tick loop's per-tick error handling, like a fatal error would."""


def run_service_in_thread(config_path: Path, source: sidecar.MetricsSource) -> BaseException:
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            sidecar.run_service(
                str(config_path), metrics_source=source, exit_hook=fake_exit, restart_delay=0
            )
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)  # daemon: a hang cannot block pytest
    thread.start()
    thread.join(SCENARIO_TIMEOUT)
    assert not thread.is_alive(), "run_service kept running"
    return outcome[0]


@pytest.fixture
def quiet_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sidecar, "setup_logging", lambda *args, **kwargs: None)


def write_config(sock_dir: Path, listen: dict[str, Any] | None = None, **extra: Any) -> Path:
    """A config file like the role writes; a unix socket in sock_dir unless told otherwise."""
    config_path = sock_dir / "metrics.json"
    listen = listen or {"path": str(sock_dir / "s.sock")}
    config_path.write_text(json.dumps({"listen": listen, **extra}))
    return config_path


@pytest.mark.usefixtures("quiet_logging")
def test_run_service_exits_when_tick_task_dies(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_path = write_config(sock_dir)

    def dying() -> dict[str, Any]:
        raise Die()

    with caplog.at_level(logging.INFO, logger="sidecar"):
        outcome = run_service_in_thread(config_path, dying)
    assert isinstance(outcome, Exited) and outcome.args == (1,)
    record = next(r for r in caplog.records if r.levelno == logging.CRITICAL)
    assert "serving loop died" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert isinstance(record.exc_info[1].__cause__, Die)


@pytest.mark.usefixtures("quiet_logging")
def test_run_service_ends_quietly_on_apache_shutdown(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # mod_wsgi's SIGTERM handler for service scripts raises SystemExit in the loop.
    config_path = write_config(sock_dir)

    def terminated() -> dict[str, Any]:
        raise SystemExit()

    with caplog.at_level(logging.INFO, logger="sidecar"):
        outcome = run_service_in_thread(config_path, terminated)
    assert isinstance(outcome, Exited) and outcome.args == (0,)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("stopping" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("quiet_logging")
def test_run_service_exits_when_site_fails(sock_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_path = write_config(sock_dir, {"host": "127.0.0.1", "port": port})
        outcome = run_service_in_thread(config_path, lambda: SYNTHETIC)
    assert isinstance(outcome, Exited) and outcome.args == (1,)


@pytest.mark.usefixtures("quiet_logging")
def test_run_service_raises_on_bad_config(sock_dir: Path) -> None:
    config_path = write_config(sock_dir, {"port": 8765}, heartbeat=-1)
    outcome = run_service_in_thread(config_path, lambda: SYNTHETIC)
    assert isinstance(outcome, sidecar.ConfigError)
    assert "heartbeat" in str(outcome)
