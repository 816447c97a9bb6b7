"""WebSocket load client of the capacity and fan-out benchmark; runs inside the container.

Standard library and aiohttp only (aiohttp 3.8 to 3.11, public APIs). Connections are
spread over worker processes, each far below the per-process open-files limit, that
open WebSockets with a bounded number of handshakes in flight, classify every attempt,
keep the connected ones reading (reading is what answers pings), and on command record
the delivery delay of every snapshot frame.

As a module, bench.py drives a LoadPool. As a command (the Molecule capacity test):

    python3 loadclient.py --url ws://127.0.0.1/metrics/ws --clients 500 --excess 100 \
        --http-url http://127.0.0.1/ [--handshake-timeout 5] [--hold 3]

opens --clients WebSockets, holds them --hold seconds, then attempts --excess more while
still holding them, sampling --http-url throughout, and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import http.client
import json
import math
import multiprocessing
import re
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any
from urllib.parse import urlsplit

import aiohttp

# Each worker stays far below the 20000 open-files limit of a process.
MAX_PER_WORKER = 4000
# Workers are planned for this many connections each, leaving room below the cap.
PLANNED_PER_WORKER = 3000
HANDSHAKE_TIMEOUT = 5.0
HTTP_TIMEOUT = 5.0
# The reference sidecar's frames are the whole scoreboard, hundreds of KB.
MAX_FRAME = 64 * 1024 * 1024
# Seconds a worker may take to answer a short command.
COMMAND_TIMEOUT = 60.0
OUTCOMES = ("connected", "refused", "hung", "errors", "skipped")
# Refusals caused by the peer: a reset, a refused connect, a broken pipe.
RESET_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE, errno.ECONNABORTED}
# A snapshot frame of the role's sidecar ("type":"snapshot") or of the guide's ({"snapshot":).
SNAPSHOT_HEAD = re.compile(r'"type"\s*:\s*"snapshot"|^\{\s*"snapshot"\s*:')
SEQ_HEAD = re.compile(r'"seq"\s*:\s*(\d+)')
HEAD_CHARS = 200
# A JSON number after a key: the snapshot time of a frame.
NUMBER = r"\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "p50_ms": ms(percentile(seconds, 50)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds, default=None)),
    }


def raise_open_files_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- HTTP sampling ---------------------------------------------------------------------------


def http_get(url: str, timeout: float = HTTP_TIMEOUT) -> float | None:
    """Seconds for one GET on a fresh connection (as a new visitor), or None on failure."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request("GET", parts.path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        ok = response.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        conn.close()
    return time.perf_counter() - started if ok else None


class HttpSampler:
    """Sequential GETs in a thread until stopped, or a count or a time bound is reached.

    Requests start at most every `interval` seconds, so a sample spans several ticks and
    the sampling itself does not become a load of its own.
    """

    def __init__(
        self, url: str, max_count: int = 200, max_seconds: float = 20.0, interval: float = 0.02
    ) -> None:
        self.url = url
        self.max_count = max_count
        self.max_seconds = max_seconds
        self.interval = interval
        self.ok: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-sampler", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_count):
            started = time.monotonic()
            if self._stop.is_set() or started >= deadline:
                break
            seconds = http_get(self.url)
            if seconds is None:
                self.failed += 1
            else:
                self.ok.append(seconds)
            self._stop.wait(max(0.0, started + self.interval - time.monotonic()))

    def start(self) -> HttpSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        # One request in progress ends within its socket timeouts (connect, then read).
        self._thread.join(3 * HTTP_TIMEOUT)
        return self.result()

    def run(self) -> dict[str, Any]:
        self._run()
        return self.result()

    def result(self) -> dict[str, Any]:
        return {"ok": len(self.ok), "failed": self.failed, **summary_ms(list(self.ok))}


# --- one worker process ----------------------------------------------------------------------


class Window:
    """Deliveries of the ticks whose snapshot time lies in [t_from, t_to)."""

    def __init__(self, stamp_key: str, t_from: float, t_to: float) -> None:
        self.stamp = re.compile(f'"{re.escape(stamp_key)}"' + NUMBER)
        self.t_from = t_from
        self.t_to = t_to
        self.delays: list[float] = []
        self.ticks: Counter[str] = Counter()
        self.bytes = 0
        self.unstamped = 0

    def record(self, text: str, received: float) -> None:
        found = self.stamp.search(text)
        if found is None:
            self.unstamped += 1
            return
        stamp = float(found.group(1))
        if not self.t_from <= stamp < self.t_to:
            return
        # A tick is its seq where the frame has one, else its snapshot time.
        seq = SEQ_HEAD.search(text, 0, HEAD_CHARS)
        self.ticks[seq.group(1) if seq else found.group(1)] += 1
        self.delays.append(received - stamp)
        # JSON as sent is ASCII (json.dumps escapes the rest), so characters are bytes.
        self.bytes += len(text)

    def result(self) -> dict[str, Any]:
        return {
            "delays": self.delays,
            "ticks": dict(self.ticks),
            "bytes": self.bytes,
            "unstamped": self.unstamped,
        }


class Worker:
    """Holds WebSockets in one process and answers the driver's commands over a pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sockets: set[aiohttp.ClientWebSocketResponse] = set()
        self.readers: set[asyncio.Task[None]] = set()
        self.frames = 0
        self.snapshots = 0
        self.dropped = 0
        self.read_errors: Counter[str] = Counter()
        self.window: Window | None = None
        self.stopping = False
        self.session: aiohttp.ClientSession | None = None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[Any] = asyncio.Queue()

        def on_readable() -> None:
            try:
                commands.put_nowait(self.conn.recv())
            except (EOFError, OSError):
                commands.put_nowait(("exit",))  # the driver is gone: stop, do not linger

        # force_close: a refused attempt's connection must not be kept for the next one.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        loop.add_reader(self.conn.fileno(), on_readable)
        try:
            while True:
                command = await commands.get()
                if command[0] == "exit":
                    break
                reply = await self.handle(command)
                try:
                    self.conn.send(reply)
                except OSError:
                    break
        finally:
            loop.remove_reader(self.conn.fileno())
            self.stopping = True
            # Closing the session aborts every WebSocket's connection at once.
            await asyncio.wait_for(self.session.close(), 30)
            for task in list(self.readers):
                task.cancel()

    async def handle(self, command: tuple[Any, ...]) -> dict[str, Any]:
        name, *args = command
        if name == "open":
            return await self.open_many(*args)
        if name == "measure":
            self.window = Window(*args)
            return {"ok": True}
        if name == "progress":
            return {"recorded": len(self.window.delays) if self.window else 0}
        if name == "collect":
            window, self.window = self.window, None
            return window.result() if window else Window("time", 0, 0).result()
        if name == "status":
            return self.status()
        raise ValueError(f"unknown command {name!r}")

    def status(self) -> dict[str, Any]:
        return {
            "open": len(self.sockets),
            "frames": self.frames,
            "snapshots": self.snapshots,
            "dropped": self.dropped,
            "read_errors": dict(self.read_errors),
            "cpu": time.process_time(),
        }

    async def open_many(
        self,
        url: str,
        count: int,
        timeout: float,
        inflight: int,
        deadline: float,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Attempt `count` WebSockets, at most `inflight` handshakes at a time.

        Attempts not started by `deadline` (epoch seconds) are skipped, which bounds the
        time a step can take when most attempts hang.
        """
        result: dict[str, Any] = dict.fromkeys(OUTCOMES, 0)
        refuse_seconds: list[float] = []
        connect_seconds: list[float] = []
        reasons: Counter[str] = Counter()
        gate = asyncio.Semaphore(inflight)

        async def one() -> None:
            async with gate:
                if time.time() >= deadline:
                    result["skipped"] += 1
                    return
                if len(self.sockets) >= MAX_PER_WORKER:
                    result["errors"] += 1
                    reasons["worker connection cap"] += 1
                    return
                outcome, seconds, reason = await self.attempt(url, timeout, headers)
            result[outcome] += 1
            if outcome == "connected":
                connect_seconds.append(seconds)
            elif outcome == "refused":
                refuse_seconds.append(seconds)
            if reason:
                reasons[reason] += 1

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        result.update(
            seconds=time.monotonic() - started,
            refuse_seconds=refuse_seconds,
            connect_seconds=connect_seconds,
            reasons=dict(reasons),
        )
        return result

    async def attempt(
        self, url: str, timeout: float, headers: dict[str, str] | None = None
    ) -> tuple[str, float, str]:
        """One handshake: (outcome, seconds until it was decided, reason)."""
        assert self.session is not None
        started = time.monotonic()
        try:
            ws = await asyncio.wait_for(
                self.session.ws_connect(url, max_msg_size=MAX_FRAME, headers=headers), timeout
            )
        except TimeoutError:
            return "hung", time.monotonic() - started, ""
        except aiohttp.WSServerHandshakeError as exc:
            outcome = "errors" if exc.status == 101 else "refused"
            # Who answered tells a front proxy's refusal from the sidecar's own.
            server = re.sub(r"/\S*", "", (exc.headers or {}).get("Server", "?"))
            return outcome, time.monotonic() - started, f"HTTP {exc.status} ({server})"
        except aiohttp.ServerDisconnectedError:
            return "refused", time.monotonic() - started, "closed"
        except aiohttp.ClientConnectorError as exc:
            return self._os_outcome(exc.os_error, started)
        except aiohttp.ClientOSError as exc:
            return self._os_outcome(exc, started)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return "errors", time.monotonic() - started, type(exc).__name__
        self.sockets.add(ws)
        task = asyncio.ensure_future(self.read(ws))
        self.readers.add(task)
        task.add_done_callback(self.readers.discard)
        return "connected", time.monotonic() - started, ""

    @staticmethod
    def _os_outcome(exc: OSError, started: float) -> tuple[str, float, str]:
        seconds = time.monotonic() - started
        if exc.errno in RESET_ERRNOS:
            return "refused", seconds, errno.errorcode.get(exc.errno or 0, "reset")
        return "errors", seconds, errno.errorcode.get(exc.errno or 0, type(exc).__name__)

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read until the WebSocket ends; any error ends this socket only, never the worker."""
        try:
            async for msg in ws:  # pings are answered inside receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.on_frame(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    self.read_errors[type(msg.data).__name__] += 1
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. a reset while sending an automatic pong
            self.read_errors[type(exc).__name__] += 1
        finally:
            self.sockets.discard(ws)
            if not self.stopping:
                self.dropped += 1

    def on_frame(self, text: str) -> None:
        received = time.time()
        self.frames += 1
        if SNAPSHOT_HEAD.search(text, 0, HEAD_CHARS):
            self.snapshots += 1
        if self.window is not None:
            self.window.record(text, received)


def _worker_main(conn: Connection) -> None:
    raise_open_files_limit()
    asyncio.run(Worker(conn).serve())


# --- the driver's side -----------------------------------------------------------------------


class WorkerDied(RuntimeError):
    """A worker process ended or did not answer in time."""


class LoadPool:
    """Worker processes holding WebSockets; every call is bounded in time."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited threads or event loop
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for index in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_worker_main, args=(child,), name=f"loadclient-{index}", daemon=True
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @staticmethod
    def workers_for(peak_connections: int) -> int:
        return max(1, math.ceil(peak_connections / PLANNED_PER_WORKER))

    def __enter__(self) -> LoadPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, commands: Sequence[tuple[Any, ...]], timeout: float) -> list[dict[str, Any]]:
        """Send one command to each worker and wait for every reply."""
        for conn, command in zip(self.conns, commands, strict=True):
            conn.send(command)
        replies: list[dict[str, Any]] = [{} for _ in self.conns]
        pending = {conn: index for index, conn in enumerate(self.conns)}
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            ready = wait(list(pending), max(0.0, left))
            if not ready:
                raise WorkerDied(f"{len(pending)} load client worker(s) silent for {timeout:.0f} s")
            for conn in ready:
                assert isinstance(conn, Connection)
                index = pending.pop(conn)
                try:
                    replies[index] = conn.recv()
                except EOFError:
                    raise WorkerDied(f"load client worker {index} died") from None
        return replies

    def broadcast(self, *command: Any, timeout: float = COMMAND_TIMEOUT) -> list[dict[str, Any]]:
        return self.call([command] * len(self.conns), timeout)

    def open(
        self,
        url: str,
        count: int,
        timeout: float = HANDSHAKE_TIMEOUT,
        inflight: int = 256,
        max_seconds: float = 120.0,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Attempt `count` WebSockets spread over the workers; merged outcome counts.
        `headers` go with every handshake (a sidecar's secret, reaching it directly)."""
        n = len(self.conns)
        shares = [count // n + (1 if i < count % n else 0) for i in range(n)]
        per_worker = max(1, math.ceil(inflight / n))
        deadline = time.time() + max_seconds
        started = time.monotonic()
        replies = self.call(
            [("open", url, share, timeout, per_worker, deadline, headers) for share in shares],
            max_seconds + 3 * timeout + COMMAND_TIMEOUT,
        )
        merged: dict[str, Any] = dict.fromkeys(OUTCOMES, 0)
        refuse: list[float] = []
        connect: list[float] = []
        reasons: Counter[str] = Counter()
        for reply in replies:
            for key in OUTCOMES:
                merged[key] += reply[key]
            refuse += reply["refuse_seconds"]
            connect += reply["connect_seconds"]
            reasons.update(reply["reasons"])
        merged.update(
            attempted=count,
            seconds=round(time.monotonic() - started, 3),
            refuse_seconds=refuse,
            connect_seconds=connect,
            reasons=dict(reasons),
        )
        return merged

    def status(self) -> dict[str, Any]:
        replies = self.broadcast("status")
        merged: dict[str, Any] = {
            key: sum(r[key] for r in replies) for key in ("open", "frames", "snapshots", "dropped")
        }
        errors: Counter[str] = Counter()
        for reply in replies:
            errors.update(reply["read_errors"])
        merged.update(cpu=sum(r["cpu"] for r in replies), read_errors=dict(errors))
        return merged

    def close(self) -> None:
        """Stop every worker (their connections close with them); bounded, never raises."""
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("exit",))
        for proc in self.procs:
            proc.join(45)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []


# --- command line (the Molecule capacity test) ------------------------------------------------


def counts(result: dict[str, Any]) -> dict[str, int]:
    return {key: result[key] for key in ("connected", "refused", "hung", "errors")}


def run_cli(args: argparse.Namespace) -> dict[str, Any]:
    peak = args.clients + args.excess
    sampler = HttpSampler(args.http_url, 2000, args.max_seconds, interval=0.05)
    with LoadPool(LoadPool.workers_for(peak)) as pool:
        sampler.start()
        try:
            held = pool.open(args.url, args.clients, args.handshake_timeout, args.inflight)
            before = pool.status()["snapshots"]
            time.sleep(args.hold)
            messages = pool.status()["snapshots"] - before
            excess = pool.open(args.url, args.excess, args.handshake_timeout, args.inflight)
        finally:
            http_result = sampler.stop()
    refuse_max = max(excess["refuse_seconds"], default=None)
    return {
        "held": {**counts(held), "messages": messages},
        "excess": {
            **counts(excess),
            "refuse_seconds_max": None if refuse_max is None else round(refuse_max, 3),
        },
        "http": http_result,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="WebSocket capacity probe (prints one JSON)")
    parser.add_argument(
        "--url", required=True, help="WebSocket URL, e.g. ws://127.0.0.1/metrics/ws"
    )
    parser.add_argument("--clients", type=int, required=True, help="WebSockets to open and hold")
    parser.add_argument("--excess", type=int, default=0, help="further attempts while holding")
    parser.add_argument("--http-url", required=True, help="URL sampled throughout")
    parser.add_argument("--handshake-timeout", type=float, default=HANDSHAKE_TIMEOUT)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to hold before excess")
    parser.add_argument("--inflight", type=int, default=100, help="handshakes in flight at most")
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="bound of the HTTP sampling"
    )
    args = parser.parse_args(argv)
    if args.clients < 0 or args.excess < 0 or args.hold < 0 or args.inflight < 1:
        parser.error("--clients, --excess and --hold must be >= 0, --inflight >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run_cli(args)
    except WorkerDied as exc:
        print(f"loadclient: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
