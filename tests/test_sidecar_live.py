"""The sidecar over real sockets: HTTP, WebSocket fan-out, slow clients, process death.

Each test is a plain function driving a coroutine with asyncio.run, every scenario is
bounded by a timeout, and poll intervals are small so the whole file runs in seconds.
No outcome hangs on the machine being quick (the test command runs lanes side by side
on two cores: a tick may wake a quarter of a second late). A test reads until the frame
it needs arrives, its timeout only a guard against one that never comes; the tick
schedule runs on a virtual clock (VirtualTimeLoop), where every sleep ends on time; and
what can only be measured in real time is held to a bound far from both the usual
figure and the failure's (a tick that waits on a stuck client waits seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import selectors
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
import wsclient
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from mod_wsgi_ws_sidecar import core
from mod_wsgi_ws_sidecar import dashboard as sidecar
from mod_wsgi_ws_sidecar import trends as sidecar_trends

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
    source: sidecar.MetricsSource = lambda: SYNTHETIC,
    clock: Callable[[], float] = time.time,
    **config: Any,
) -> AsyncIterator[tuple[sidecar.Sidecar, TestClient]]:
    config.setdefault("poll_interval", 0.05)
    sc = sidecar.Sidecar(sidecar.Config(**config), source, clock=clock)
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
            payload = await frame(ws, timeout=left)
        except TimeoutError:
            break
        frames.append((time.monotonic(), payload))
    return frames


async def read_until(
    ws: aiohttp.ClientWebSocketResponse,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 10.0,
) -> list[tuple[float, dict[str, Any]]]:
    """(arrival time, frame) for every frame up to the first that is `done`;
    `timeout` only guards against one that never comes."""
    frames: list[tuple[float, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while not (frames and done(frames[-1][1])):
        left = deadline - time.monotonic()
        assert left > 0, "the awaited frame never came"
        payload = await frame(ws, timeout=left)
        frames.append((time.monotonic(), payload))
    return frames


def max_gap(frames: list[tuple[float, dict[str, Any]]]) -> float:
    arrivals = [arrived for arrived, _ in frames]
    return max(b - a for a, b in itertools.pairwise(arrivals))


def record_ticks(sc: sidecar.Sidecar) -> list[int]:
    """The number of every tick the sidecar takes from now on, as it takes it."""
    taken: list[int] = []
    take = sc.take_snapshot

    def recording(seq: int | None = None) -> str:
        text = take(seq)
        taken.append(sc.seq)
        return text

    sc.take_snapshot = recording  # type: ignore[method-assign]
    return taken


def assert_every_tick_received(
    frames: list[tuple[float, dict[str, Any]]], taken: list[int]
) -> None:
    """A client connected all along got each tick taken since `taken` began,
    once and in order, up to the last frame it read (frames of earlier ticks
    may come first)."""
    seqs = [f["seq"] for _, f in frames]
    since = [seq for seq in seqs if seq >= taken[0]]
    assert since and since == taken[: len(since)], (seqs, taken)


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
            # autoping off: the pong that ends the reading below reaches the test.
            ws = await client.ws_connect("/ws", autoping=False)
            snapshot = await frame(ws)
            # Only a client that asks (the page) gets the history, and only once.
            for _ in range(2):
                await ws.send_str(sidecar.HISTORY_REQUEST)
            # The server answers a ping in turn, after reading both requests:
            # whatever they brought comes before its pong.
            await ws.ping()
            frames = []
            while (msg := await ws.receive(timeout=10)).type != WSMsgType.PONG:
                assert msg.type == WSMsgType.TEXT, msg
                frames.append(json.loads(msg.data))
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
    async def at_once() -> None:
        # A clock standing still on a multiple of the minute: one tick at the
        # start, the next a minute away; a frame that waited for it would miss
        # the 10 s the test allows.
        async with serving(poll_interval=60.0, clock=lambda: 6000.0) as (sc, client):
            await wait_until(lambda: sc.latest is not None)
            ws = await client.ws_connect("/ws")
            first = await frame(ws, timeout=10)
            assert (first["type"], first["seq"], first["time"]) == ("snapshot", 100, 6000.0)
            assert first["summary"]["workers"]["busy_write"] == 1
            assert first["workers"][0]["request"] == "GET /metrics/ws HTTP/1.1"
            await ws.close()

    async def every_tick() -> None:
        async with serving(poll_interval=0.1) as (sc, client):
            taken = record_ticks(sc)
            ws = await client.ws_connect("/ws")
            first = await frame(ws)
            later = [await frame(ws, timeout=10) for _ in range(3)]
            # The ticks taken after the one it got at once, each once and in order.
            assert [f["seq"] for f in later] == [seq for seq in taken if seq > first["seq"]][:3]
            for f in [first, *later]:
                assert abs(f["time"] - time.time()) < 5  # the wall clock's seconds
                assert f["time"] > f["seq"] * 0.1 - 0.01, f  # never before its moment
            await ws.close()

    run(at_once())
    run(every_tick())


# --- the tick schedule, on a virtual clock ---------------------------------------------------


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a clock of its own that, whenever the loop would wait,
    jumps to its next timer: every sleep ends exactly on time, however loaded
    the machine. Otherwise time passes only by `advance` (work a tick does)."""

    def __init__(self, start: float) -> None:
        self.now = start
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> Any:
        # Rather than sleep until the next timer, move the clock to it (with no
        # timer at all, wait for real: a thread's wake-up).
        ready = super().select(None if timeout is None else 0)
        if not ready and timeout:
            self._loop.advance(timeout)
        return ready


def first_ticks(
    source: Callable[[VirtualTimeLoop], sidecar.MetricsSource],
    count: int,
    interval: float,
    start: float,
) -> list[dict[str, Any]]:
    """The frames of a sidecar's first `count` ticks, on a virtual clock at
    `start`; `source(loop)` reads the scoreboard (and may advance the clock)."""

    async def scenario(loop: VirtualTimeLoop) -> list[dict[str, Any]]:
        config = sidecar.Config(poll_interval=interval)
        sc = sidecar.Sidecar(config, source(loop), clock=loop.time)
        frames: list[dict[str, Any]] = []
        enough = asyncio.Event()
        take = sc.take_snapshot

        def recording(seq: int | None = None) -> str:
            text = take(seq)
            frames.append(json.loads(text))
            if len(frames) == count:
                enough.set()
            return text

        sc.take_snapshot = recording  # type: ignore[method-assign]
        ticks = asyncio.create_task(sc.run_ticks())
        waiting = asyncio.create_task(enough.wait())
        await asyncio.wait({ticks, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if ticks.done():
            ticks.result()  # the tick loop's own error, if it died
        ticks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticks
        return frames[:count]

    loop = VirtualTimeLoop(start)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(asyncio.wait_for(scenario(loop), SCENARIO_TIMEOUT))


def test_ticks_fall_on_the_multiples_of_the_interval_and_are_numbered_by_them() -> None:
    # So the processes of one sidecar number their ticks alike (tests of
    # two processes taking turns: tests/test_sidecar_clients.py).
    first, *frames = first_ticks(lambda _: lambda: SYNTHETIC, 5, interval=0.25, start=1000.1)
    # The first at once, wherever the clock is, numbered as the last multiple passed.
    assert (first["seq"], first["time"]) == (4000, 1000.1)
    assert [(f["seq"], f["time"]) for f in frames] == [
        (seq, seq * 0.25) for seq in range(4001, 4005)
    ]


def test_ticks_keep_a_fixed_cadence() -> None:
    def slow_source(loop: VirtualTimeLoop) -> sidecar.MetricsSource:
        def read() -> dict[str, Any]:
            loop.advance(0.05)  # work inside the tick must not push later ticks back
            return SYNTHETIC

        return read

    _, *frames = first_ticks(slow_source, 11, interval=0.1, start=1000.03)
    # 9 intervals: 0.9 s on a fixed cadence, 1.35 s if the work added up
    span = frames[-1]["time"] - frames[0]["time"]
    assert span == pytest.approx(0.9, abs=0.002), span
    first_seq = frames[0]["seq"]
    assert [f["seq"] for f in frames] == list(range(first_seq, first_seq + 10))
    # each read the work's 0.05 s after the multiple it is numbered by
    for f in frames:
        assert f["time"] == pytest.approx(f["seq"] * 0.1 + 0.05, abs=0.001), f


@pytest.mark.parametrize(("stall", "step"), [(0.6, 1), (1.0, 2)])
def test_a_tick_that_overruns_runs_the_next_late_or_skips_what_it_missed(
    stall: float, step: int
) -> None:
    # Interval 0.4 s; one reading takes `stall`: 1.5 intervals and the tick
    # it overran runs at once, late; 2.5 and the one it overran is skipped
    # (only the latest due runs: no burst).
    def stalling_source(loop: VirtualTimeLoop) -> sidecar.MetricsSource:
        calls = itertools.count()

        def read() -> dict[str, Any]:
            if next(calls) == 4:
                loop.advance(stall)
            return SYNTHETIC

        return read

    frames = first_ticks(stalling_source, 8, interval=0.4, start=1000.03)
    steps = [b["seq"] - a["seq"] for a, b in itertools.pairwise(frames)]
    # Each tick numbered once, in order: no number twice, none going back.
    assert steps == [1, 1, 1, 1, step, 1, 1], steps
    stalled, late, back = frames[4:7]
    assert stalled["time"] == pytest.approx(stalled["seq"] * 0.4 + stall, abs=0.001)
    assert late["time"] == stalled["time"]  # at once, not on a multiple of its own
    assert back["time"] == pytest.approx(back["seq"] * 0.4, abs=0.001)  # on time again


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
    failures_due = 0

    def flaky() -> dict[str, Any]:
        nonlocal failures_due
        if failures_due:
            failures_due -= 1
            raise OSError("scoreboard went away")
        return SYNTHETIC

    async def scenario() -> list[dict[str, Any]]:
        nonlocal failures_due
        async with serving(flaky, poll_interval=0.02) as (_, client):
            ws = await client.ws_connect("/ws")
            payloads = [await frame(ws)]
            failures_due = 3  # the next three reads, with the client there to see them
            while [p["type"] for p in payloads[-2:]] != ["error", "snapshot"]:
                payloads.append(await frame(ws, timeout=10))
            return payloads

    with caplog.at_level(logging.INFO, logger="sidecar"):
        payloads = run(scenario())
    kinds = [p["type"] for p in payloads]
    # an error frame for each failed read, then a snapshot: recovered
    assert kinds[kinds.index("error") :] == ["error", "error", "error", "snapshot"], kinds
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
        # send_timeout 5 s: a tick that waited on a dead client would leave a gap of 5 s.
        async with serving(send_timeout=5.0) as (sc, client):
            healthy = await client.ws_connect("/ws")
            await frame(healthy)
            goners = [await raw_upgrade(client.server.port) for _ in range(3)]
            await wait_until(lambda: len(sc.clients) == 4)
            taken = record_ticks(sc)
            for sock in goners:  # RST, no close frame
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            # The healthy client reads on while they go, then five ticks more.
            frames = await read_until(healthy, lambda _: len(sc.clients) == 1)
            gone = len(taken)
            frames += await read_until(
                healthy, lambda f: len(taken) >= gone + 5 and f["seq"] >= taken[gone + 4]
            )
            assert_every_tick_received(frames, taken)
            assert max_gap(frames) < 2.5
            assert sc.tick_task is not None and not sc.tick_task.done()

    run(scenario())


async def stalled_client_scenario(
    **config: Any,
) -> tuple[list[tuple[float, dict[str, Any]]], list[int], float]:
    """A healthy client and one that never reads; returns the healthy client's
    frames after its first, the ticks taken meanwhile, and how long the drop took."""
    async with serving(lambda: busy_scoreboard(), poll_interval=0.05, **config) as (sc, client):
        healthy = await client.ws_connect("/ws")
        await frame(healthy)
        taken = record_ticks(sc)
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
        # Keeps flowing after the drop: five ticks more.
        after = len(taken)
        frames += await read_until(
            healthy, lambda f: len(taken) >= after + 5 and f["seq"] >= taken[after + 4]
        )
        await assert_closed_by_server(stalled)
        stalled.close()
        return frames, taken, dropped_after


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
        frames, taken, dropped_after = run(
            stalled_client_scenario(send_timeout=3.0, max_send_buffer=1 << 30)
        )
    assert any("data unsent for longer than 3.0s" in r.getMessage() for r in caplog.records)
    assert dropped_after < 6  # 3 s of backlog, once the socket buffers filled
    # No tick ever waits for the stalled client: the healthy one gets every
    # tick, and one that waited out the 3 s send_timeout would leave a 3 s gap.
    assert_every_tick_received(frames, taken)
    assert max_gap(frames) < 1.5


def test_stalled_client_dropped_by_buffer_limit(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        frames, taken, dropped_after = run(
            stalled_client_scenario(send_timeout=5.0, max_send_buffer=16384)
        )
    assert any("bytes still unsent" in r.getMessage() for r in caplog.records)
    assert dropped_after < 6
    # the healthy client gets every tick, never waiting on the stalled one
    # (send_timeout is 5 s: a tick that waited would leave a 5 s gap)
    assert_every_tick_received(frames, taken)
    assert max_gap(frames) < 2.5


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
        headers = {} if presented is None else {core.SECRET_HEADER: presented}
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
        headers = {core.SECRET_HEADER: SECRET}
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
    monkeypatch.setattr(core, "SOCKET_CHECK_INTERVAL", 0.05)
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
    monkeypatch.setattr(core, "setup_logging", lambda *args, **kwargs: None)


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

    with caplog.at_level(logging.INFO, logger=core.log.name):
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
    assert isinstance(outcome, core.ConfigError)
    assert "heartbeat" in str(outcome)
