"""Push path benchmark driver; runs inside the container (bench/push.sh starts it).

For each target and size: N subscribers connect and subscribe to one channel
(spread over at least 4 processes of at most 1,500 each, every one on the
same lean client, bench/lean_ws.py), then one message a second is
published for `--messages` seconds, each carrying its publish time; every
subscriber notes publish-to-receipt for every message. Reported per target
and size: p50, p99 and max of those delays over all subscribers and
messages, messages lost, and the connect time.

Targets:
  role      the role's push sidecar through Apache (ws://127.0.0.1/push/ws),
            published with the application's module (mod_wsgi_ws_sidecar.push)
  socketio  python-socketio's AsyncServer with its AsyncRedisManager
            (bench/socketio_server.py on 127.0.0.1:8090, straight, no Apache),
            published with its write-only RedisManager, as a WSGI app would
  fleet     run on a balancer of the fleet (bench/fleet.sh): the web hosts'
            push sidecars through HAProxy (ws://127.0.0.1/push/ws), published
            by the demo application through HAProxy (POST /push-demo/publish)

A fleet's subscribers may be spread over several balancers: there one run
publishes, and each other one runs with --no-publish, saying when it is
subscribed (--ready-file) and waiting for word that publishing ended
(--published-file), which bench/fleet.sh passes between the containers.

Everything targets 127.0.0.1; every wait is bounded. Writes one JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import platform
import resource
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import lean_ws

# Where the role installs its package (mod_wsgi_ws_sidecar), the application's python-path.
LIB = "/usr/local/lib/mod_wsgi_ws_sidecar/python"
SOCKETIO_REDIS = "redis://127.0.0.1:6380/0"
CHANNEL = "bench"
# The demo application publishes on demo* channels only; demo.public.* needs no token.
FLEET_CHANNEL = "demo.public.bench"
# Publishes before the clock starts, through the balancer (see fleet_publisher).
WARM_UP_PUBLISHES = 20
# How long a --no-publish run waits for the word that publishing ended.
PUBLISHED_WAIT = 900.0
# Subscribers are spread over processes (at least MIN_PROCESSES, at most
# PER_PROCESS each), so that the measuring side does not queue frames itself:
# the capacity benchmark's load client spreads its clients likewise.
MIN_PROCESSES = 4
PER_PROCESS = 1500
CONNECT_TIMEOUT = 180.0


# --- subscribers (in child processes) ------------------------------------------------------


class Tally:
    """What one process's subscribers received."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.delays: list[float] = []
        self.worst: dict[int, float] = {}
        self.seen = [0] * count
        self.subscribed_ones: set[int] = set()
        self.all_subscribed = asyncio.Event()
        # Why attempts failed: the upgrade refused (its status line), no
        # connection, or the subscription refused (its reason): reason -> count.
        self.refusals: dict[str, int] = {}

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def subscribed(self, index: int) -> None:
        self.subscribed_ones.add(index)
        if len(self.subscribed_ones) == self.count:
            self.all_subscribed.set()

    def received(self, index: int, data: dict) -> None:
        delay = time.time() - data["t"]
        self.delays.append(delay)
        self.worst[data["n"]] = max(self.worst.get(data["n"], 0), delay)
        self.seen[index] += 1


def role_handler(tally: Tally, index: int) -> Any:
    """The push sidecar's protocol: JSON frames."""

    def on_text(_socket: lean_ws.LeanWebSocket, text: str) -> None:
        frame = json.loads(text)
        if frame["type"] == "message":
            tally.received(index, frame["data"])
        elif frame["type"] == "subscribed":
            tally.subscribed(index)
        elif frame["type"] == "refused":
            tally.refused(f"subscription refused: {frame['reason']}")

    return on_text


def fleet_handler(tally: Tally, index: int) -> Any:
    """The push sidecar's protocol, each message as the demo application
    publishes it: {"text": TEXT}, the text the JSON the benchmark sent."""

    def on_text(_socket: lean_ws.LeanWebSocket, text: str) -> None:
        frame = json.loads(text)
        if frame["type"] == "message":
            tally.received(index, json.loads(frame["data"]["text"]))
        elif frame["type"] == "subscribed":
            tally.subscribed(index)
        elif frame["type"] == "refused":
            tally.refused(f"subscription refused: {frame['reason']}")

    return on_text


def socketio_handler(tally: Tally, index: int) -> Any:
    """Socket.IO 5 over Engine.IO 4, as python-socketio's client speaks it:
    "0{...}" opens, "40" joins the main namespace, "420[...]" asks to join
    the room with acknowledgement 0 ("430[...]"), "42[...]" is an event, "2"
    a ping to answer with "3"."""

    def on_text(socket: lean_ws.LeanWebSocket, text: str) -> None:
        if text.startswith("42"):
            name, data = json.loads(text[2:])
            if name == "msg":
                tally.received(index, data)
        elif text == "2":
            socket.send_text("3")
        elif text.startswith("0"):
            socket.send_text("40")
        elif text.startswith("40"):
            socket.send_text("420" + json.dumps(["join", CHANNEL]))
        elif text.startswith("430"):
            tally.subscribed(index)

    return on_text


TARGETS = {
    # target: (port, path, handler, first message once open)
    "role": (80, "/push/ws", role_handler, json.dumps({"type": "subscribe", "channel": CHANNEL})),
    "socketio": (8090, "/socket.io/?EIO=4&transport=websocket", socketio_handler, None),
    "fleet": (
        80,
        "/push/ws",
        fleet_handler,
        json.dumps({"type": "subscribe", "channel": FLEET_CHANNEL}),
    ),
}


async def subscribers(target: str, count: int, ready: Any, expected: int, settle: float) -> dict:
    port, path, handler, first = TARGETS[target]
    tally = Tally(count)
    sockets: list[lean_ws.LeanWebSocket] = []

    async def one(index: int) -> None:
        for _attempt in range(30):
            try:
                socket = await lean_ws.connect("127.0.0.1", port, path, handler(tally, index))
            except (TimeoutError, ConnectionError, OSError) as exc:
                tally.refused(str(exc) or type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            sockets.append(socket)
            if first is not None:
                socket.send_text(first)
            await socket.closed
            return

    tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
    started = time.monotonic()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(tally.all_subscribed.wait(), CONNECT_TIMEOUT)
    ready.send({"subscribed": len(tally.subscribed_ones), "seconds": time.monotonic() - started})
    cpu_from = time.process_time()
    await wait_for_messages(tally.seen, expected, ready, settle)
    result = summary(
        tally.delays,
        [tally.seen[i] for i in sorted(tally.subscribed_ones)],
        expected,
        tally.worst,
        cpu_from,
    )
    result["refusals"] = tally.refusals
    for socket in sockets:
        socket.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def wait_for_messages(seen: list[int], expected: int, pipe: Any, settle: float) -> None:
    """Until the parent says publishing ended, then until every subscriber has
    every message or `settle` seconds passed."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)
    deadline = time.monotonic() + settle
    while min(seen, default=expected) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def summary(
    delays: list[float], seen: list[int], expected: int, worst: dict, cpu_from: float
) -> dict:
    """A sample of the delays, what the subscribed clients (their counts in
    `seen`) lost, each message's slowest delivery, and the CPU this process
    used since `cpu_from` (its process time when all had subscribed)."""
    delays.sort()
    step = max(1, len(delays) // 20000)  # a sample keeps the pipe small
    return {
        "sample": delays[::step],
        "received": len(delays),
        "lost": sum(max(0, expected - n) for n in seen),
        "worst": worst,
        "cpu_seconds": time.process_time() - cpu_from,
    }


def merged_refusals(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for one in counts:
        for reason, count in one.items():
            merged[reason] = merged.get(reason, 0) + count
    return dict(sorted(merged.items(), key=lambda item: -item[1]))


def child(target: str, count: int, pipe: Any, expected: int, settle: float) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pipe.send(asyncio.run(subscribers(target, count, pipe, expected, settle)))


# --- publishing and the measurement (the parent) -------------------------------------------


def publisher(target: str) -> Any:
    if target == "role":
        sys.path.insert(0, LIB)
        from mod_wsgi_ws_sidecar import push

        # Connected before the clock starts: a first publish also connects.
        push.publish(f"{CHANNEL}-warm-up", {})
        return lambda data: push.publish(CHANNEL, data)
    if target == "fleet":
        return fleet_publisher()
    import socketio

    manager = socketio.RedisManager(SOCKETIO_REDIS, write_only=True)
    manager.emit("msg", {}, room=f"{CHANNEL}-warm-up")
    return lambda data: manager.emit("msg", data, room=CHANNEL)


def fleet_publisher() -> Any:
    """The demo application asked to publish, through the balancer, on one
    kept-alive connection (a new one if the balancer closed it)."""
    connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)

    def publish(data: dict, channel: str = FLEET_CHANNEL) -> None:
        body = urllib.parse.urlencode({"channel": channel, "message": json.dumps(data)})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for attempt in (1, 2):
            try:
                connection.request("POST", "/push-demo/publish", body, headers)
                answer = connection.getresponse()
                answer.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                if attempt == 2:
                    raise
                continue
            if answer.status != 200:
                raise RuntimeError(f"publishing through the balancer: HTTP {answer.status}")
            return

    # Connected before the clock starts, on a channel no subscriber is on,
    # often enough that every web host's application processes have their
    # publisher connected to Redis too (each makes its own on first use).
    for _ in range(WARM_UP_PUBLISHES):
        publish({}, f"{FLEET_CHANNEL}.warm-up")
    return publish


TICKS = os.sysconf("SC_CLK_TCK")


def group_of(comm: str, cmdline: str) -> str | None:
    if cmdline.startswith("(wsgi:push)"):
        return "push sidecar"
    if comm == "apache2":
        return "apache"
    if "socketio_server.py" in cmdline:
        return "socket.io server"
    if comm == "redis-server":
        return "redis"
    if comm == "haproxy":
        return "haproxy"
    return None


def cpu_by_group() -> dict[str, float]:
    """CPU seconds used so far by each group of server processes in the
    container (the driver's own processes count theirs themselves: the
    subscribers' have exited by the time this runs again)."""
    used: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                stat = fh.read()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        group = group_of(comm, cmdline)
        if group:
            fields = stat[stat.rindex(")") + 2 :].split()
            used[group] = used.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return used


def percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wait_for_file(path: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {seconds:.0f} s")
        time.sleep(0.2)


def measure(
    target: str,
    size: int,
    messages: int,
    settle: float,
    publishing: bool = True,
    ready_file: str = "",
    published_file: str = "",
    samples_out: str = "",
) -> dict[str, Any]:
    processes = min(size, max(MIN_PROCESSES, math.ceil(size / PER_PROCESS)))
    shares = [size // processes + (1 if i < size % processes else 0) for i in range(processes)]
    context = multiprocessing.get_context("fork")
    pipes, workers = [], []
    for share in shares:
        ours, theirs = context.Pipe()
        worker = context.Process(target=child, args=(target, share, theirs, messages, settle))
        worker.start()
        pipes.append(ours)
        workers.append(worker)
    ready = [p.recv() for p in pipes]
    subscribed = sum(r["subscribed"] for r in ready)
    if ready_file:
        with open(ready_file + ".part", "w", encoding="utf-8") as fh:
            json.dump({"subscribed": subscribed}, fh)
        os.rename(ready_file + ".part", ready_file)
    publish = publisher(target) if publishing else None
    cpu_before, wall_before = cpu_by_group(), time.monotonic()
    publisher_cpu_before = time.process_time()
    publish_seconds = []
    for n in range(messages if publish else 0):
        began = time.time()
        publish({"t": began, "n": n})
        publish_seconds.append(time.time() - began)
        time.sleep(max(0.0, began + 1.0 - time.time()))
    if published_file:
        wait_for_file(published_file, PUBLISHED_WAIT)
    for pipe in pipes:
        pipe.send("published")
    results = [p.recv() for p in pipes]
    publisher_cpu = time.process_time() - publisher_cpu_before
    cpu_after, wall = cpu_by_group(), time.monotonic() - wall_before
    cpu_after["subscribers"] = sum(r["cpu_seconds"] for r in results)
    cpu_after["publisher"] = publisher_cpu
    for worker in workers:
        worker.join(30)
        if worker.is_alive():
            worker.kill()
    delays = sorted(d for r in results for d in r["sample"])
    if samples_out:  # for percentiles over several runs' subscribers (bench/fleet_report.py)
        with open(samples_out, "w", encoding="utf-8") as fh:
            json.dump([round(d * 1000, 2) for d in delays], fh)
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    return {
        "target": target,
        "size": size,
        "subscribed": subscribed,
        "connect_seconds": round(max(r["seconds"] for r in ready), 1),
        "messages": messages,
        "deliveries": sum(r["received"] for r in results),
        "expected_deliveries": subscribed * messages,
        "lost": sum(r["lost"] for r in results),
        "refusals": merged_refusals([r["refusals"] for r in results]),
        "p50_ms": ms(percentile(delays, 0.5)),
        "p99_ms": ms(percentile(delays, 0.99)),
        "max_ms": ms(delays[-1] if delays else None),
        "publish_p99_ms": ms(percentile(sorted(publish_seconds), 0.99)),
        # Where the machine's CPU went while publishing and delivering.
        "wall_seconds": round(wall, 1),
        "cpu_seconds": {
            group: round(cpu_after[group] - cpu_before.get(group, 0.0), 1)
            for group in sorted(cpu_after)
        },
        # The slowest delivery of each message, in publishing order.
        "slowest_per_message_ms": [
            ms(max(r["worst"].get(n, 0) for r in results)) for n in range(messages)
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["role", "socketio"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--settle", type=float, default=30)
    parser.add_argument("--out", required=True)
    parser.add_argument("--revision", default="unknown")
    parser.add_argument(
        "--no-publish",
        dest="publishing",
        action="store_false",
        help="only subscribe: another run publishes (a fleet's other balancers)",
    )
    parser.add_argument("--ready-file", default="", help="written once all have subscribed")
    parser.add_argument("--published-file", default="", help="wait for it before collecting")
    parser.add_argument("--samples-out", default="", help="write the delays sampled (ms) here")
    args = parser.parse_args()
    if not all(1 <= s <= 20000 for s in args.sizes) or not 1 <= args.messages <= 300:
        parser.error("bounds: 1-20000 subscribers, at most 300 messages")
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": args.revision,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": [],
    }
    for target in args.targets:
        for size in args.sizes:
            run = measure(
                target,
                size,
                args.messages,
                args.settle,
                args.publishing,
                args.ready_file,
                args.published_file,
                args.samples_out,
            )
            print(json.dumps(run), flush=True)
            report["runs"].append(run)
            with open(args.out, "w", encoding="utf-8") as fh:
                json.dump(report, fh, indent=1)
            time.sleep(5)  # let the closed connections go
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
