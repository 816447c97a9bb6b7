"""Capacity and fan-out benchmark driver; runs inside the container (bench/run.sh starts it).

For each configuration, in the order (d), (b), (c), (a): ramp WebSocket clients in steps to
each size, measure while they are held (HTTP latency of the WSGI app, fan-out delay, memory,
CPU), then attempt as many again as the largest size (the overload step) and close
everything. (a) comes last because it reconfigures Apache. Writes one JSON file, rewritten
after every configuration so a run cut short still leaves its results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import loadclient as lc
import procstats as ps

HTTP_URL = "http://127.0.0.1/"
# The role's dashboard settings: its secret, which Apache (and nginx here) adds.
ROLE_SIDECAR_SETTINGS = "/etc/mod_wsgi_ws_sidecar/metrics-sidecar.json"
# Ports whose connections must be gone before the next configuration starts.
BENCH_PORTS = (80, 8081, 8765)
ROLE_SITE = "mod_wsgi_ws_sidecar"
ROLE_CAPACITY_CONF = "mod_wsgi_ws_sidecar_capacity"
ROLE_DROPIN = "/etc/systemd/system/apache2.service.d/mod_wsgi_ws_sidecar.conf"
REFERENCE_SITE = "mws-bench-reference"
# The dashboard's service script, as the role wrote it (kept while (e) and (f) run),
# and what stands in for it then.
DASHBOARD_SCRIPT = "/etc/mod_wsgi_ws_sidecar/metrics-sidecar.py"
ROLE_SCRIPT_COPY = "/opt/bench/role-metrics-sidecar.py"
FLAT_SCRIPT = """# bench.py: the bare sidecar (/opt/bench/flat_sidecar.py) in the dashboard's place.
import sys

sys.path.insert(0, "/opt/bench")
import flat_sidecar  # noqa: E402

flat_sidecar.run_service("/etc/mod_wsgi_ws_sidecar/metrics-sidecar.json")
"""
FLAT_FRAME_BYTES = "/opt/bench/flat-frame-bytes"
MPM_KEYS = (
    "ServerLimit",
    "ThreadLimit",
    "ThreadsPerChild",
    "MaxRequestWorkers",
    "StartServers",
    "ThreadStackSize",
)


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    ws_url: str
    # The frame's snapshot time: the role's sidecar sends "time", the guide's only the
    # scoreboard's own "current_time".
    stamp_key: str
    # Start of the sidecar daemon's process title: display-name=%{GROUP} cut to the length of
    # Apache's argv[0] (/usr/sbin/apache2, 17 characters).
    sidecar_title: str
    # Clients straight to the role's sidecar send the secret a front end would add.
    sends_secret: bool = False
    # The largest size tried (None: every size). nginx holds two descriptors per
    # client in one of two workers, each held to 20,000 files here: 10,000 clients
    # and as many again at overload is its ceiling on these machines.
    max_size: int | None = None
    # The bare tunnel's far end (bench/flat_sidecar.py) in the dashboard's place.
    flat: bool = False

    def sizes(self, wanted: Sequence[int]) -> list[int]:
        return [s for s in wanted if self.max_size is None or s <= self.max_size]

    def headers(self) -> dict[str, str] | None:
        if not self.sends_secret:
            return None
        with open(ROLE_SIDECAR_SETTINGS, encoding="utf-8") as fh:
            return {"X-Sidecar-Secret": json.load(fh)["secret"]}


TARGETS = (
    Target("direct", "(d) direct", "ws://127.0.0.1:8765/ws", "time", "(wsgi:metrics-sid", True),
    Target("role", "(b) role", "ws://127.0.0.1/metrics/ws", "time", "(wsgi:metrics-sid"),
    Target(
        "nginx",
        "(c) nginx",
        "ws://127.0.0.1:8081/metrics/ws",
        "time",
        "(wsgi:metrics-sid",
        max_size=10000,
    ),
    Target(
        "tunnel",
        "(e) Apache, bare",
        "ws://127.0.0.1/metrics/ws",
        "time",
        "(wsgi:metrics-sid",
        flat=True,
    ),
    Target(
        "nginx-tunnel",
        "(f) nginx, bare",
        "ws://127.0.0.1:8081/metrics/ws",
        "time",
        "(wsgi:metrics-sid",
        max_size=10000,
        flat=True,
    ),
    Target(
        "debian-default",
        "(a) debian-default",
        "ws://127.0.0.1/metrics/ws",
        "current_time",
        "(wsgi:reference-s",
        # 150 workers: larger sizes only add attempts that hang for the timeout.
        max_size=10000,
    ),
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run(cmd: Sequence[str], check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return (done.stdout + done.stderr).strip()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- facts ------------------------------------------------------------------------------------


def _first_match(path: str, pattern: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            found = re.search(pattern, fh.read(), re.MULTILINE)
    except OSError:
        return None
    return found.group(1).strip() if found else None


def package_version(name: str) -> str | None:
    out = run(["dpkg-query", "-W", "-f", "${Version}", name], check=False)
    return out if out and "no packages found" not in out else None


def _version_in(text: str, pattern: str) -> str | None:
    found = re.search(pattern, text)
    return found.group(1) if found else None


def machine_facts() -> dict[str, Any]:
    mem_kb = _first_match("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _first_match("/proc/cpuinfo", r"^model name\s*:\s*(.+)$"),
        "memory_gib": round(int(mem_kb) / 1024**2, 1) if mem_kb else None,
        "kernel": platform.release(),
        "os": _first_match("/etc/os-release", r'^PRETTY_NAME="?([^"\n]+)'),
        "versions": {
            "apache2": _version_in(run(["apache2", "-v"], check=False), r"Apache/(\S+)"),
            "apache2_package": package_version("apache2"),
            "mod_wsgi": package_version("libapache2-mod-wsgi-py3"),
            "aiohttp": aiohttp.__version__,
            "nginx": _version_in(run(["nginx", "-v"], check=False), r"nginx/(\S+)"),
            "python": platform.python_version(),
        },
    }


def apache_facts(target: Target) -> dict[str, Any]:
    """The MPM settings in effect, the WebSocket ProxyPass lines and the sidecar's fd limit."""
    mpm: dict[str, str] = {}
    # Later files win, as Apache reads mods-enabled before conf-enabled.
    for folder in ("/etc/apache2/mods-enabled", "/etc/apache2/conf-enabled"):
        for name in sorted(os.listdir(folder)):
            if folder.endswith("mods-enabled") and name != "mpm_event.conf":
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                for line in fh:
                    words = line.split()
                    if len(words) == 2 and words[0] in MPM_KEYS:
                        mpm[words[0]] = words[1]
    proxy = []
    folder = "/etc/apache2/sites-enabled"
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            proxy += [
                " ".join(line.split()) for line in fh if line.strip().startswith("ProxyPass ")
            ]
    return {
        "mpm": mpm,
        "proxypass": proxy,
        "sidecar_open_files": ps.open_files_limit(target.sidecar_title),
    }


# --- readiness --------------------------------------------------------------------------------


async def _first_frame(url: str, timeout: float, headers: dict[str, str] | None) -> bool:
    async with aiohttp.ClientSession() as session:
        ws = await asyncio.wait_for(
            session.ws_connect(url, max_msg_size=lc.MAX_FRAME, headers=headers), timeout
        )
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout)
        finally:
            await ws.close()
        return msg.type == aiohttp.WSMsgType.TEXT


def wait_ready(target: Target, seconds: float = 90) -> None:
    """Until the WSGI app answers and the WebSocket delivers a frame."""
    deadline = time.monotonic() + seconds
    problem = "not tried"
    while time.monotonic() < deadline:
        if lc.http_get(HTTP_URL) is None:
            problem = f"{HTTP_URL} did not answer 200"
        else:
            try:
                if asyncio.run(_first_frame(target.ws_url, 5, target.headers())):
                    return
                problem = "the first message was not text"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = f"{target.ws_url}: {exc!r}"
        time.sleep(1)
    raise RuntimeError(f"{target.label} not ready after {seconds:.0f} s: {problem}")


def wait_settled(target: Target, seconds: float = 30) -> None:
    """Until Apache has started all its children (the idle memory is taken after that)."""
    deadline = time.monotonic() + seconds
    last, steady = -1, 0
    while steady < 2 and time.monotonic() < deadline:
        count = ps.sample_groups(target.sidecar_title).processes["apache"]
        steady = steady + 1 if count == last else 0
        last = count
        time.sleep(1)


def wait_quiet(seconds: float = 60) -> int:
    """Until the closed WebSockets are gone on the server side; returns what is left.

    What stays afterwards is idle keep-alive connections, such as Apache's pooled backend
    connections to the sidecar left by its 503 answers; the count then stops falling.
    """
    deadline = time.monotonic() + seconds
    left, steady = ps.established(BENCH_PORTS), 0
    while left > 0 and steady < 3 and time.monotonic() < deadline:
        time.sleep(1)
        now = ps.established(BENCH_PORTS)
        steady = steady + 1 if now >= left else 0
        left = now
    return left


def serve_flat_sidecar(flat: bool, frame_bytes: int | None) -> None:
    """Configurations (e) and (f): the dashboard's service script runs the bare
    sidecar instead, with the dashboard's settings, its frames `frame_bytes`
    long (the direct path's); any other has the role's script."""
    if not os.path.exists(ROLE_SCRIPT_COPY):
        shutil.copy2(DASHBOARD_SCRIPT, ROLE_SCRIPT_COPY)
    if frame_bytes:
        with open(FLAT_FRAME_BYTES, "w", encoding="ascii") as fh:
            fh.write(f"{frame_bytes}\n")
    if flat:
        with open(DASHBOARD_SCRIPT, "w", encoding="utf-8") as fh:
            fh.write(FLAT_SCRIPT)
    else:
        shutil.copy2(ROLE_SCRIPT_COPY, DASHBOARD_SCRIPT)


def switch_to_reference() -> None:
    """Configuration (a): the guide's wiring on Debian's stock MPM and limits (restart to use)."""
    run(["a2dissite", "-q", ROLE_SITE])
    run(["a2disconf", "-q", ROLE_CAPACITY_CONF], check=False)  # absent before the role sizes
    if os.path.exists(ROLE_DROPIN):
        os.remove(ROLE_DROPIN)
    run(["systemctl", "daemon-reload"])
    run(["a2ensite", "-q", REFERENCE_SITE])
    run(["apache2ctl", "-t"])


# --- measurements -----------------------------------------------------------------------------


class Meter:
    """CPU of the load client, the server processes and the machine over one phase."""

    def __init__(self, pool: lc.LoadPool, target: Target) -> None:
        self.pool = pool
        self.target = target
        self.wall = time.monotonic()
        self.client = pool.status()["cpu"]
        self.driver = time.process_time()
        self.groups = ps.sample_groups(target.sidecar_title)
        self.machine = ps.machine_cpu()
        self.container = ps.container_cpu()

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        client = self.pool.status()["cpu"] - self.client
        servers = ps.cpu_seconds(self.groups, ps.sample_groups(self.target.sidecar_title))

        def pct(seconds: float) -> float:
            return round(100 * seconds / wall, 1) if wall > 0 else 0.0

        container = ps.container_cpu()
        if container is None or self.container is None:
            container_pct = None
        else:
            container_pct = round(pct(container - self.container) / (os.cpu_count() or 1), 1)

        return {
            "wall_s": round(wall, 2),
            "client_cpu_s": round(client, 2),
            "client_pct_core": pct(client),
            "driver_cpu_s": round(time.process_time() - self.driver, 2),
            "server_cpu_s": servers,
            "server_pct_core": {group: pct(s) for group, s in servers.items()},
            # Both in % of all cores: this container's cgroup, and the whole machine.
            "container_busy_pct": container_pct,
            "machine_busy_pct": ps.machine_busy_percent(self.machine, ps.machine_cpu()),
        }


def attempts_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Outcome counts and timings of one open() call, without the raw lists."""
    refuse = result["refuse_seconds"]
    return {
        **{key: result[key] for key in ("attempted", *lc.OUTCOMES, "seconds", "reasons")},
        "connect": lc.summary_ms(result["connect_seconds"]),
        "refuse": lc.summary_ms(refuse),
        "refused_within_1s": sum(1 for s in refuse if s <= 1.0),
    }


def memory(idle: ps.Groups, now: ps.Groups, held: int) -> dict[str, Any]:
    delta = {g: now.rss_kb[g] - idle.rss_kb[g] for g in ps.GROUPS}
    return {
        "rss_kb": now.rss_kb,
        "processes": now.processes,
        "delta_kb": delta,
        "per_websocket_kb": {g: round(d / held, 1) if held else None for g, d in delta.items()},
    }


def tick_shares(ticks: dict[str, int], connected: int) -> list[float]:
    """Share of the connected clients that got each tick; a seq never seen counts as 0.

    Only the ticks wholly inside the window count: the processes of a sidecar
    of several send the same tick half an interval apart (by its stamp), so an
    edge of the window may fall between them and split the first or last tick.
    """
    counts: dict[Any, int] = dict(ticks)
    if counts and all(key.isdigit() for key in counts):
        seqs = sorted(int(key) for key in counts)
        inner = range(seqs[0] + 1, seqs[-1]) if len(seqs) > 2 else range(seqs[0], seqs[-1] + 1)
        counts = {seq: ticks.get(str(seq), 0) for seq in inner}
    return [round(n / connected, 4) for n in counts.values()] if connected else []


def measure_fanout(pool: lc.LoadPool, target: Target, window: float) -> dict[str, Any]:
    """Every delivery of the ticks taken during `window` seconds, waiting for late ones."""
    connected = pool.status()["open"]
    t_from = time.time() + 0.5
    t_to = t_from + window
    pool.broadcast("measure", target.stamp_key, t_from, t_to)
    time.sleep(max(0.0, t_to - time.time()))
    # Late deliveries of the window's ticks: wait until none arrive for 1.5 s, 15 s at most.
    last, steady_since, drain_end = -1, time.monotonic(), time.monotonic() + 15
    while time.monotonic() < drain_end:
        recorded = sum(r["recorded"] for r in pool.broadcast("progress"))
        if recorded != last:
            last, steady_since = recorded, time.monotonic()
        elif time.monotonic() - steady_since >= 1.5:
            break
        time.sleep(0.5)
    delays: list[float] = []
    ticks: Counter[str] = Counter()
    total_bytes = unstamped = 0
    for reply in pool.broadcast("collect", timeout=120):
        delays += reply["delays"]
        ticks.update(reply["ticks"])
        total_bytes += reply["bytes"]
        unstamped += reply["unstamped"]
    shares = tick_shares(dict(ticks), connected)
    return {
        "window_s": window,
        "connected": connected,
        "ticks": len(shares),
        "deliveries": len(delays),
        "unstamped": unstamped,
        "delay": lc.summary_ms(delays),
        "bytes_per_client_tick": round(total_bytes / len(delays)) if delays else None,
        "share_min": min(shares, default=None),
        "share_mean": round(sum(shares) / len(shares), 4) if shares else None,
    }


def held_step(
    pool: lc.LoadPool,
    target: Target,
    size: int,
    attempts: int,
    idle: ps.Groups,
    args: argparse.Namespace,
) -> dict[str, Any]:
    log(f"{target.label}: ramp +{attempts} to {size}")
    before = pool.status()
    meter = Meter(pool, target)
    ramp = pool.open(
        target.ws_url,
        attempts,
        args.handshake_timeout,
        args.inflight,
        args.step_seconds,
        target.headers(),
    )
    ramp_cpu = meter.stop()
    time.sleep(args.settle)  # the first broadcasts to the newcomers
    status = pool.status()
    held = status["open"]
    rss = memory(idle, ps.sample_groups(target.sidecar_title), held)
    log(f"{target.label}: holding {held}; HTTP and fan-out")
    meter = Meter(pool, target)
    http = lc.HttpSampler(HTTP_URL, args.http_samples, args.http_seconds).run()
    http_cpu = meter.stop()
    meter = Meter(pool, target)
    fanout = measure_fanout(pool, target, args.window)
    fanout_cpu = meter.stop()
    return {
        "size": size,
        "ramp": attempts_summary(ramp),
        "held": held,
        "dropped": pool.status()["dropped"] - before["dropped"],
        "memory": rss,
        "http": http,
        "fanout": fanout,
        "cpu": {"ramp": ramp_cpu, "http": http_cpu, "fanout": fanout_cpu},
    }


def overload_step(
    pool: lc.LoadPool, target: Target, count: int, args: argparse.Namespace
) -> dict[str, Any]:
    log(f"{target.label}: overload, {count} more attempts")
    held_before = pool.status()["open"]
    sampler = lc.HttpSampler(
        HTTP_URL, 10_000, args.step_seconds + 3 * args.handshake_timeout, interval=0.05
    )
    meter = Meter(pool, target)
    sampler.start()
    try:
        result = pool.open(
            target.ws_url,
            count,
            args.handshake_timeout,
            args.inflight,
            args.step_seconds,
            target.headers(),
        )
    finally:
        http = sampler.stop()
    return {
        "held_before": held_before,
        "held_after": pool.status()["open"],
        **attempts_summary(result),
        "http": http,
        "cpu": meter.stop(),
    }


def run_target(
    target: Target, args: argparse.Namespace, frame_bytes: int | None = None
) -> dict[str, Any]:
    started = time.monotonic()
    serve_flat_sidecar(target.flat, frame_bytes)
    if target.key == "debian-default":
        log(f"{target.label}: reconfiguring Apache")
        switch_to_reference()
    # Fresh processes for every configuration: memory a previous one grew is not given back,
    # and (d), (b) and (c) share the sidecar.
    run(["systemctl", "restart", "apache2", "nginx"], timeout=180)
    wait_ready(target)
    wait_settled(target)
    log(f"{target.label}: ready")
    result: dict[str, Any] = {"key": target.key, "label": target.label, "ws_url": target.ws_url}
    result["server"] = apache_facts(target)
    idle = ps.sample_groups(target.sidecar_title)
    log(f"{target.label}: idle HTTP")
    result["idle"] = {
        "rss_kb": idle.rss_kb,
        "processes": idle.processes,
        "http": lc.HttpSampler(HTTP_URL, args.http_samples, args.http_seconds).run(),
    }
    sizes = target.sizes(args.sizes)
    workers = lc.LoadPool.workers_for(2 * max(sizes))
    with lc.LoadPool(workers) as pool:
        steps, previous = [], 0
        for size in sizes:
            steps.append(held_step(pool, target, size, size - previous, idle, args))
            previous = size
        result["steps"] = steps
        result["overload"] = overload_step(pool, target, max(sizes), args)
        log(f"{target.label}: closing everything")
    result["left_connections"] = wait_quiet()
    log(f"{target.label}: done, {result['left_connections']} connections left")
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


# --- main -------------------------------------------------------------------------------------


def direct_frame_bytes(configs: Sequence[dict[str, Any]]) -> int | None:
    """The dashboard's frame on the direct path (d) at its largest size, if (d) ran."""
    for config in configs:
        if config["key"] == "direct" and config.get("steps"):
            return config["steps"][-1]["fanout"]["bytes_per_client_tick"]
    return None


def write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="WebSocket capacity and fan-out benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--out", default="/opt/bench/results.json")
    parser.add_argument("--only", nargs="*", choices=[t.key for t in TARGETS], help="subset")
    parser.add_argument("--handshake-timeout", type=float, default=lc.HANDSHAKE_TIMEOUT)
    parser.add_argument("--inflight", type=int, default=400, help="handshakes in flight, total")
    parser.add_argument(
        "--step-seconds", type=float, default=90, help="no attempt starts later in a step"
    )
    parser.add_argument("--window", type=float, default=6, help="fan-out window, seconds")
    parser.add_argument("--settle", type=float, default=2, help="seconds after each ramp")
    parser.add_argument("--http-samples", type=int, default=200)
    parser.add_argument("--http-seconds", type=float, default=20, help="bound of one sample")
    parser.add_argument("--command", default="bench/run.sh", help="recorded in the JSON")
    parser.add_argument("--revision", default="", help="recorded in the JSON")
    args = parser.parse_args(argv)
    if any(s <= 0 for s in args.sizes) or args.sizes != sorted(set(args.sizes)):
        parser.error("--sizes must be positive and ascending")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # An outer `timeout` sends SIGTERM: unwind so the worker processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lc.raise_open_files_limit()
    started = time.monotonic()
    data: dict[str, Any] = {
        "schema": 1,
        "started": now_iso(),
        "command": args.command,
        "revision": args.revision,
        "sizes": args.sizes,
        "settings": {
            "handshake_timeout_s": args.handshake_timeout,
            "http_timeout_s": lc.HTTP_TIMEOUT,
            "inflight": args.inflight,
            "step_seconds": args.step_seconds,
            "window_s": args.window,
            "http_samples": args.http_samples,
            "http_seconds": args.http_seconds,
            "workers": lc.LoadPool.workers_for(2 * max(args.sizes)),
        },
        "machine": machine_facts(),
        "configs": [],
        "errors": [],
    }
    for target in TARGETS:
        if (args.only and target.key not in args.only) or not target.sizes(args.sizes):
            continue
        try:
            data["configs"].append(run_target(target, args, direct_frame_bytes(data["configs"])))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            log(f"{target.label}: FAILED: {exc}")
            data["errors"].append({"config": target.key, "error": str(exc)})
            wait_quiet()
        data["duration_s"] = round(time.monotonic() - started, 1)
        write_json(args.out, data)
    data["finished"] = now_iso()
    data["duration_s"] = round(time.monotonic() - started, 1)
    write_json(args.out, data)
    log(f"done in {data['duration_s']:.0f} s: {args.out}")
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
