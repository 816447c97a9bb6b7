"""Live Apache server-metrics dashboard pushed to browsers over a WebSocket.

Runs as a mod_wsgi service script: a daemon process group with threads=0 and
server-metrics=on imports a wrapper that calls run_service(), which never returns.
For development it also runs standalone:
python3 -m mod_wsgi_ws_sidecar.dashboard --listen 127.0.0.1:8765

An application on the package's core (core.py). The page it serves is
dashboard.html, beside this file; trends.py keeps its history, fleet.py its
fleet view (which needs the redis package only for a fleet's dashboard).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from . import core
from . import fleet as sidecar_fleet
from . import metrics as sidecar_metrics
from . import trends as sidecar_trends
from .core import ConfigError

log = logging.getLogger("sidecar")

Scoreboard = Mapping[str, Any]
MetricsSource = Callable[[], Scoreboard | None]

SCOREBOARD_UNAVAILABLE = (
    "scoreboard not available: set server-metrics=on on this sidecar's WSGIDaemonProcess"
    " (or --server-metrics for mod_wsgi-express)"
)
# Bounds the frame size on a busy server: every WebSocket is a busy worker, so
# thousands of clients would otherwise mean thousands of rows in every frame.
MAX_LISTED_WORKERS = 6
# The share of each process's turn in an interval (interval / processes) over
# which a tick's sends are paced: the burst of sending, relaying and reading
# thousands of frames comes in slices, and the WSGI application on the same
# cores is served between them (docs/benchmarks.md measures both).
FANOUT_SPREAD = 0.5
# What the dashboard's page sends once connected, for the history frame.
HISTORY_REQUEST = '{"type":"history"}'
# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Config(core.ServerConfig):
    name: str = "metrics"
    poll_interval: float = core.DEFAULTS["poll_interval"]
    # One dashboard for a fleet of hosts (sidecar_fleet.py); None: this host only.
    fleet: sidecar_fleet.FleetConfig | None = None
    # The sidecars whose open WebSockets the dashboard counts (sidecar_trends.py).
    routes: tuple[sidecar_trends.Route, ...] = ()
    # Request lines as Apache has them; by default their query strings are hidden.
    show_query_strings: bool = core.DEFAULTS["show_query_strings"]


KEYS = core.SERVER_KEYS | {"poll_interval", "fleet", "sidecars", "show_query_strings"}


def parse_config(data: Any) -> Config:
    """Validate the role-written JSON config (already decoded) into a Config."""
    core.check_keys(data, KEYS)
    show_query_strings = data.get("show_query_strings", Config.show_query_strings)
    if not isinstance(show_query_strings, bool):
        raise ConfigError(
            f"config key 'show_query_strings' must be true or false, got {show_query_strings!r}"
        )
    try:
        fleet = sidecar_fleet.parse_fleet(data["fleet"]) if "fleet" in data else None
        routes = sidecar_trends.parse_routes(data.get("sidecars", []))
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"config key {exc}") from None
    return Config(
        **core.parse_server(data, Config.name),
        poll_interval=core.positive(data, "poll_interval", Config.poll_interval),
        fleet=fleet,
        routes=routes,
        show_query_strings=show_query_strings,
    )


def load_config(path: str) -> Config:
    return core.load_config(path, parse_config)


# --- scoreboard -> payload (pure) ----------------------------------------------------------

# The one normalisation table: state -> (mod_status code as in mod_wsgi 4.9/5.0, spelled-out
# forms of newer releases, lower-cased with spaces, "_" and "-" removed).
_STATES: dict[str, tuple[str, str]] = {
    "dead": (".", "dead openslot"),
    "ready": ("_", "ready waiting idle"),
    "starting": ("S", "starting startingup"),
    "busy_read": ("R", "busyread read reading readingrequest"),
    "busy_write": ("W", "busywrite write writing busywriting sendingreply"),
    "keepalive": ("K", "keepalive busykeepalive"),
    "logging": ("L", "logging log busylog"),
    "dns": ("D", "dns dnslookup busydns"),
    "closing": ("C", "closing closingconnection"),
    "graceful": ("G", "graceful gracefullyfinishing gracefulfinishing"),
    "idle_kill": ("I", "idlekill idlecleanup"),
}
STATE_CODES = {state: code for state, (code, _words) in _STATES.items()} | {"unknown": "?"}
_LOOKUP = {code: state for state, (code, _words) in _STATES.items()} | {
    word: state for state, (_code, words) in _STATES.items() for word in words.split()
}
# Left out of the per-tick worker list. Like mod_status, "starting" and "idle_kill" are
# not counted as busy either.
HIDDEN_STATES = frozenset({"ready", "dead"})
NOT_BUSY_STATES = HIDDEN_STATES | {"starting", "idle_kill", "unknown"}
# What of the scoreboard's own fields and of the summary the page draws:
# every byte of a frame goes to every client every tick, so the rest stays
# out (the traffic totals feed the rates, computed here).
SERVER_KEYS = ("running_generation", "running_time")
UNDRAWN_TOTALS = frozenset({"accesses", "bytes_served"})


def normalise_status(raw: object) -> str:
    """Map a scoreboard status (mod_status code or spelled-out word) to a state name."""
    return _normalise_text(str(raw).strip() if raw is not None else "")


# Every slot of the scoreboard is normalised every tick, and a few statuses
# repeat over thousands of slots: each distinct one is worked out once.
@functools.lru_cache(maxsize=256)
def _normalise_text(text: str) -> str:
    key = text.upper() if len(text) == 1 else "".join(c for c in text.lower() if c not in " _-")
    return _LOOKUP.get(key, "unknown")


def _ms(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def summarise(snapshot: Scoreboard) -> dict[str, Any]:
    """Count worker slots by state and total the traffic counters."""
    counts = dict.fromkeys(STATE_CODES, 0)
    processes = accesses = bytes_served = 0
    for proc in snapshot.get("processes") or ():
        if proc.get("pid"):  # pid 0 is an empty process slot
            processes += 1
        for worker in proc.get("workers") or ():
            counts[normalise_status(worker.get("status"))] += 1
            accesses += int(worker.get("access_count") or 0)
            bytes_served += int(worker.get("bytes_served") or 0)
    return {
        "workers": counts,
        "busy": sum(n for state, n in counts.items() if state not in NOT_BUSY_STATES),
        "idle": counts["ready"],
        "slots": sum(counts.values()),
        "processes": processes,
        "accesses": accesses,
        "bytes_served": bytes_served,
    }


def active_workers(snapshot: Scoreboard) -> list[dict[str, Any]]:
    """Workers that are neither ready nor dead, in scoreboard order, with
    their request lines whole."""
    rows = []
    for i, proc in enumerate(snapshot.get("processes") or ()):
        for j, worker in enumerate(proc.get("workers") or ()):
            state = normalise_status(worker.get("status"))
            if state in HIDDEN_STATES:
                continue
            # Only what the dashboard shows: rows go to every client every tick.
            rows.append(
                {
                    "process": proc.get("process_num", i),
                    "thread": j,
                    "state": state,
                    "client": str(worker.get("client") or ""),
                    "request": str(worker.get("request") or ""),
                    "vhost": str(worker.get("vhost") or ""),
                }
            )
    return rows


def error_payload(seq: int, now: float, error: str) -> dict[str, Any]:
    return {"type": "error", "seq": seq, "time": round(now, 3), "error": error}


def build_payload(
    snapshot: Scoreboard | None,
    seq: int,
    now: float,
    trends: sidecar_trends.Trends | None = None,
    fleet: sidecar_fleet.FleetView | None = None,
    show_query_strings: bool = False,
) -> dict[str, Any]:
    """The frame for one tick: a compact digest of the scoreboard, never the raw
    scoreboard; with trends, the figures that need the ticks before (rates,
    sidecars, virtual hosts), and with a fleet (which needs trends), this
    host's row goes to it and every host's comes back."""
    if snapshot is None:
        return error_payload(seq, now, SCOREBOARD_UNAVAILABLE)
    workers = active_workers(snapshot)
    summary = summarise(snapshot)
    listed = workers[:MAX_LISTED_WORKERS]
    if not show_query_strings:
        listed = [{**w, "request": sidecar_trends.redact_query(w["request"])} for w in listed]
    payload = {
        "type": "snapshot",
        "seq": seq,
        "time": round(now, 3),
        "server": {key: _ms(snapshot.get(key)) for key in SERVER_KEYS},
        "summary": {key: value for key, value in summary.items() if key not in UNDRAWN_TOTALS},
        "workers": listed,
        "workers_omitted": max(0, len(workers) - MAX_LISTED_WORKERS),
    }
    if trends is not None:
        payload.update(trends.tick(snapshot, summary, workers, now))
        if fleet is not None:
            payload["fleet"] = fleet.tick(summary, payload, now)
    return payload


def encode(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


# The page is a file of its own beside this one; the role installs both.
DASHBOARD_HTML = (Path(__file__).resolve().parent / "dashboard.html").read_text(encoding="utf-8")


def render_index(forwarded_prefix: str) -> str:
    """Dashboard HTML with the proxy mount prefix injected as an escaped JS string."""
    prefix = forwarded_prefix.strip().rstrip("/")
    if not prefix.startswith("/"):  # anything else could redirect the WebSocket to another host
        prefix = ""
    literal = json.dumps(prefix)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        literal = literal.replace(char, escaped)
    script = f"<script>window.METRICS_BASE = {literal};</script>"
    return DASHBOARD_HTML.replace("<!--METRICS_BASE-->", script, 1)


# --- server --------------------------------------------------------------------------------


class Sidecar(core.WebSocketServer):
    """The dashboard: its clients (core.WebSocketServer), its page, its
    Prometheus endpoint and the one tick task that reads the scoreboard and
    sends every client the same frame."""

    def __init__(
        self,
        config: Config,
        metrics_source: MetricsSource,
        clock: Callable[[], float] = time.time,
        fleet_redis: tuple[Any, tuple[type[BaseException], ...]] | None = None,
        metrics: sidecar_metrics.Metrics | None = None,
    ) -> None:
        # The endpoint's counters: shared with the host's other sidecars by run_service.
        super().__init__(
            config,
            metrics or sidecar_metrics.open_metrics(config.name, None),
            log,
            what="dashboard",
        )
        self.config: Config = config
        self.metrics.add_collector(
            sidecar_metrics.ApacheCollector(
                lambda: self.snapshot, config.routes, summarise, active_workers
            )
        )
        if config.metrics_dir is not None:  # the push sidecars' Redis, as they read it
            self.metrics.add_collector(sidecar_metrics.RedisStatsCollector(config.metrics_dir))
        self._source = metrics_source
        self._clock = clock
        # With a fleet: the rows, and (tests pass their own) its Redis and its errors.
        self.fleet = sidecar_fleet.FleetView(config.fleet) if config.fleet else None
        self._fleet_redis = fleet_redis
        self.fleet_task: asyncio.Task[None] | None = None
        self.trends = sidecar_trends.Trends(config.routes, config.poll_interval)
        # The last scoreboard read, for the Prometheus endpoint.
        self.snapshot: Scoreboard | None = None
        self.seq = 0
        self.latest: str | None = None
        self._latest_frame = b""
        self._problem: str | None = None
        self.tick_task: asyncio.Task[None] | None = None
        self.app.router.add_get("/", self.handle_index)
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.on_startup.append(self._start_ticks)
        self.app.on_cleanup.append(self._stop_ticks)

    def take_snapshot(self, seq: int | None = None) -> str:
        """Read the scoreboard once and return the frame text (numbered `seq`,
        else the next number); never raises."""
        self.seq = self.seq + 1 if seq is None else seq
        try:
            snapshot = self.snapshot = self._source()
            # Taken after the read (10-40 ms on a large scoreboard), so clients that
            # compare it with their own clock measure the delivery alone.
            now = self._clock()
            payload = build_payload(
                snapshot, self.seq, now, self.trends, self.fleet, self.config.show_query_strings
            )
            if self.config.metrics_dir is not None and payload["type"] == "snapshot":
                payload["push"] = sidecar_metrics.read_redis_stats(self.config.metrics_dir, now)
            text = encode(payload)
        except Exception as exc:
            payload = error_payload(self.seq, self._clock(), f"scoreboard read failed: {exc!r}")
            text = encode(payload)
            self._report(payload["error"], exc_info=True)
        else:
            self._report(payload.get("error"))
        self.latest = text
        self._latest_frame = core.text_frame(text)
        return text

    def _report(self, problem: str | None, exc_info: bool = False) -> None:
        # Log changes only; a broken scoreboard must not add an error-log line every tick.
        if problem == self._problem:
            return
        if problem is None:
            log.info("scoreboard readable again")
        else:
            log.error("%s", problem, exc_info=exc_info)
        self._problem = problem

    async def run_ticks(self) -> None:
        """Tick once an interval, numbered by the multiples of the interval on
        the wall clock, so a page that reconnects to another process of the
        sidecar sees the same numbers. The processes of a sidecar of several
        take turns within each interval (the one in slot k of n ticks k/n of
        an interval after the multiple): their bursts of reading and sending
        do not fall on the same moment. A tick that overruns into the next
        one's moment runs that one late rather than drop it; one that
        overruns further skips the ticks it missed instead of bursting."""
        interval = self.config.poll_interval
        phase = (self.cap.slot % self.config.processes) / self.config.processes
        # The first at once (a page opened now gets a frame now), numbered as
        # the last one due.
        tick = math.floor(self._clock() / interval - phase)
        while True:
            started = time.monotonic()
            self.take_snapshot(seq=tick)
            if self.clients:
                spread = FANOUT_SPREAD * interval / self.config.processes
                await self.broadcast(self._latest_frame, spread)
                self.metrics.fanout.observe(time.monotonic() - started)
            wall = self._clock()
            due = math.floor(wall / interval - phase)
            if due > tick:  # overran: the latest tick due runs now
                tick = due
                await asyncio.sleep(0)
            else:
                tick += 1
                await asyncio.sleep((tick + phase) * interval - wall)

    async def handle_index(self, request: web.Request) -> web.Response:
        html = render_index(request.headers.get("X-Forwarded-Prefix", ""))
        return web.Response(
            text=html, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def handle_metrics(self, _request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition()
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    def opened(self, client: core.Client) -> dict[str, bool]:
        return {"history_sent": False}

    def welcome(self, client: core.Client) -> None:
        if self._latest_frame:
            self.send(client, self._latest_frame)

    async def received(self, client: core.Client, text: str) -> None:
        """The one message heeded, once: the page asks for the last ten
        minutes to chart. Other clients never get them."""
        state = self.clients[client]
        if text == HISTORY_REQUEST and not state["history_sent"]:
            state["history_sent"] = True
            self.send_text(client, encode(self.trends.history()))

    async def _start_ticks(self, _app: web.Application) -> None:
        self.tick_task = asyncio.create_task(self.run_ticks())
        if self.fleet is not None:
            redis, errors = self._fleet_redis or sidecar_fleet.redis_client(self.fleet.config)
            link = sidecar_fleet.FleetLink(
                self.fleet, redis, errors, self.config.poll_interval, self._clock
            )
            self.fleet_task = asyncio.create_task(link.run())

    async def _stop_ticks(self, _app: web.Application) -> None:
        await core.stop_tasks((self.tick_task, self.fleet_task))
        self.cap.close()


async def serve(
    config: Config,
    metrics_source: MetricsSource,
    stop: asyncio.Event | None = None,
    metrics: sidecar_metrics.Metrics | None = None,
) -> None:
    """Serve the dashboard until `stop` is set. Raises if the site cannot
    start, the tick task ends, or a unix socket listener loses its socket file."""
    sidecar = Sidecar(config, metrics_source, metrics=metrics)

    def essentials() -> dict[asyncio.Future[Any], str]:
        assert sidecar.tick_task is not None  # created by the app's on_startup hook
        tasks: dict[asyncio.Future[Any], str] = {sidecar.tick_task: "metrics tick task ended"}
        if sidecar.fleet_task is not None:
            tasks[sidecar.fleet_task] = "fleet task ended"
        return tasks

    await core.serve_app(
        sidecar.app, config, essentials, f"dashboard every {config.poll_interval}s", stop
    )


def run_service(
    config_path: str,
    *,
    metrics_source: MetricsSource | None = None,
    exit_hook: Callable[[int], NoReturn] = os._exit,
    restart_delay: float = core.RESTART_DELAY,
) -> NoReturn:
    """Entry point for the mod_wsgi service script; serves for the life of the process.

    Bad config or a missing mod_wsgi raise (a restart would not help). Once serving, any
    death of the loop exits the process so mod_wsgi starts a fresh daemon process.
    """
    config = load_config(config_path)
    core.setup_logging(config.name)
    if metrics_source is None:
        import mod_wsgi  # only importable inside Apache

        metrics_source = mod_wsgi.server_metrics
    source = metrics_source
    if config.metrics_dir is not None:
        sidecar_metrics.prune_dead(config.metrics_dir)
    metrics = sidecar_metrics.open_metrics(config.name, config.metrics_dir)
    core.run_until_exit(lambda: serve(config, source, metrics=metrics), exit_hook, restart_delay)


# --- standalone CLI ------------------------------------------------------------------------


def _standalone_source() -> MetricsSource:
    # The PyPI mod_wsgi package imports outside Apache too, but without server_metrics.
    try:
        from mod_wsgi import server_metrics
    except ImportError:
        log.warning("not running inside mod_wsgi: the dashboard will show the error frame")
        return lambda: None
    return server_metrics


def cli_config(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description="Apache server-metrics WebSocket dashboard")
    parser.add_argument("--config", help="JSON config file as written by the Ansible role")
    parser.add_argument("--listen", help="HOST:PORT, or an absolute unix socket path")
    parser.add_argument("--poll-interval", type=float, help="seconds between scoreboard reads")
    args = parser.parse_args(argv)
    data: dict[str, Any] = core.read_config_file(args.config) if args.config else {}
    data.setdefault("listen", {"host": Config.host, "port": Config.port})
    if args.listen:
        if args.listen.startswith("/"):
            data["listen"] = {"path": args.listen}
        else:
            host, _colon, port = args.listen.rpartition(":")
            if not host or not port.isdigit():
                parser.error(f"--listen must be HOST:PORT or /path, got {args.listen!r}")
            data["listen"] = {"host": host.strip("[]"), "port": int(port)}
    if args.poll_interval is not None:
        data["poll_interval"] = args.poll_interval
    return parse_config(data)


async def _serve_until_signalled(config: Config, metrics_source: MetricsSource) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, metrics_source, stop)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = cli_config(argv)
    except ConfigError as exc:
        print(f"sidecar: {exc}", file=sys.stderr)
        return 2
    core.setup_logging(config.name, timestamps=True)
    try:
        asyncio.run(_serve_until_signalled(config, _standalone_source()))
    except Exception:
        log.critical("serving loop died", exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
