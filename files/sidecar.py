"""Live Apache server-metrics dashboard pushed to browsers over a WebSocket.

Runs as a mod_wsgi service script: a daemon process group with threads=0 and
server-metrics=on imports a wrapper that calls run_service(), which never returns.
For development it also runs standalone: python3 sidecar.py --listen 127.0.0.1:8765

The page it serves is dashboard.html, beside this file. Only the standard library and
aiohttp (3.8 to 3.11, public APIs only) are used, and beside it sidecar_trends.py
and sidecar_fleet.py (which needs the redis package only for a fleet's dashboard).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hmac
import json
import logging
import math
import os
import signal
import stat
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import sidecar_clients
import sidecar_fleet
import sidecar_metrics
import sidecar_trends
from aiohttp import WSMsgType, web

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
CLEANUP_TIMEOUT = 5.0
# After a failure, wait this long before exiting: mod_wsgi restarts a daemon
# process at once, and a fault that outlives a restart (its port taken, say)
# would otherwise spin through restarts and flood the error log.
RESTART_DELAY = 1.0
# How often a unix-socket listener checks its socket file is still its own
# (a stat: cheap; a removed socket is found within it, then the restart).
SOCKET_CHECK_INTERVAL = 0.25
# Apache sets this header on every request it proxies to the sidecar, to the
# sidecar's secret: a local user who reaches the listener directly lacks it.
SECRET_HEADER = "X-Sidecar-Secret"
# Clients written to between two turns of the event loop in a broadcast.
BROADCAST_BATCH = 500
# What the dashboard's page sends once connected, for the history frame.
HISTORY_REQUEST = '{"type":"history"}'
# Connections the kernel queues for the listener before it accepts them
# (aiohttp's default is 128; Linux caps it at net.core.somaxconn). A burst
# that overflows the queue has its SYNs dropped, and Apache's connects then
# retry after 1 s and 3 s: clients refused late, or left hanging.
LISTEN_BACKLOG = 4096


# --- configuration -------------------------------------------------------------------------


class ConfigError(ValueError):
    """The sidecar configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class Config:
    name: str = "metrics"
    host: str = "127.0.0.1"
    port: int = 8765
    path: str | None = None  # unix socket; host and port are unused when set
    poll_interval: float = 1.0
    heartbeat: float = 30.0
    max_clients: int = 1000
    send_timeout: float = 1.0
    max_send_buffer: int = 262144
    # Origins allowed to open a WebSocket besides the site's own (lower case).
    origins: tuple[str, ...] = ()
    # What SECRET_HEADER must carry; None admits any request (standalone use).
    secret: str | None = field(default=None, repr=False)
    # One dashboard for a fleet of hosts (sidecar_fleet.py); None: this host only.
    fleet: sidecar_fleet.FleetConfig | None = None
    # The sidecars whose open WebSockets the dashboard counts (sidecar_trends.py).
    routes: tuple[sidecar_trends.Route, ...] = ()
    # Request lines as Apache has them; by default their query strings are hidden.
    show_query_strings: bool = False
    # Where the built-in sidecars keep their Prometheus counters (sidecar_metrics.py).
    metrics_dir: str | None = None
    # Processes of the sidecar sharing its TCP port (SO_REUSEPORT), and the
    # file where they keep the count of their clients (sidecar_clients.py).
    processes: int = 1
    clients_file: str | None = None

    @property
    def listen_url(self) -> str:
        return f"unix:{self.path}" if self.path else f"http://{self.host}:{self.port}"


_NUMERIC_KEYS = ("poll_interval", "heartbeat", "max_clients", "send_timeout", "max_send_buffer")
_TOP_KEYS = {
    "name",
    "listen",
    "origins",
    "secret",
    "fleet",
    "sidecars",
    "show_query_strings",
    "metrics_dir",
    "processes",
    "clients_file",
    *_NUMERIC_KEYS,
}
# The role writes 43 characters (32 random bytes); shorter is too guessable.
MIN_SECRET_LENGTH = 32
_DEFAULTS = Config()


def _positive(data: Mapping[str, Any], key: str) -> Any:
    default = getattr(_DEFAULTS, key)
    value = data.get(key, default)
    integer = isinstance(default, int)
    types = int if integer else int | float
    # bool is an int subclass; the chained comparison also rejects NaN and infinity
    if isinstance(value, bool) or not isinstance(value, types) or not 0 < value < math.inf:
        kind = "integer" if integer else "number"
        raise ConfigError(f"config key {key!r} must be a positive {kind}, got {value!r}")
    return type(default)(value)


def _parse_listen(listen: Any) -> dict[str, Any]:
    if not isinstance(listen, dict):
        raise ConfigError(f"config key 'listen' must be an object, got {listen!r}")
    unknown = sorted(set(listen) - {"host", "port", "path"})
    if unknown:
        raise ConfigError(f"unknown config key 'listen.{unknown[0]}'")
    if "path" in listen:
        path = listen["path"]
        if "host" in listen or "port" in listen:
            raise ConfigError("config key 'listen' takes either 'path' or 'host'/'port', not both")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"config key 'listen.path' must be an absolute path, got {path!r}")
        return {"path": path}
    host = listen.get("host", _DEFAULTS.host)
    if not isinstance(host, str) or not host:
        raise ConfigError(f"config key 'listen.host' must be a non-empty string, got {host!r}")
    if "port" not in listen:
        raise ConfigError("missing config key 'listen.port' (or give 'listen.path')")
    port = listen["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"config key 'listen.port' must be an integer 1-65535, got {port!r}")
    return {"host": host, "port": port}


def _parse_processes(data: Mapping[str, Any]) -> tuple[int, str | None]:
    """`processes` and `clients_file`: several processes share a TCP port and
    keep their count of clients in that file."""
    processes = data.get("processes", 1)
    limit = sidecar_clients.MAX_PROCESSES
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= limit:
        raise ConfigError(f"config key 'processes' must be an integer 1-{limit}, got {processes!r}")
    clients_file = data.get("clients_file")
    if clients_file is not None and not (
        isinstance(clients_file, str) and clients_file.startswith("/")
    ):
        raise ConfigError(
            f"config key 'clients_file' must be an absolute path, got {clients_file!r}"
        )
    if processes > 1 and clients_file is None:
        raise ConfigError("config key 'processes' above 1 needs 'clients_file' (their count)")
    if processes > 1 and isinstance(data.get("listen"), dict) and "path" in data["listen"]:
        raise ConfigError(
            "config key 'processes' above 1 needs a TCP listener: Linux spreads connections"
            " over the processes of a port (SO_REUSEPORT), not of a unix socket"
        )
    return processes, clients_file


def parse_config(data: Any) -> Config:
    """Validate the role-written JSON config (already decoded) into a Config."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a JSON object")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}")
    if "listen" not in data:
        raise ConfigError("missing config key 'listen'")
    name = data.get("name", _DEFAULTS.name)
    if not isinstance(name, str) or not name.isprintable() or not name.strip():
        raise ConfigError(f"config key 'name' must be a non-empty printable string, got {name!r}")
    origins = data.get("origins", [])
    if not isinstance(origins, list) or not all(
        isinstance(o, str) and _origin_key(o) for o in origins
    ):
        raise ConfigError(
            f"config key 'origins' must list origins like 'https://host:port', got {origins!r}"
        )
    secret = data.get("secret")
    if secret is not None and not (
        isinstance(secret, str)
        and len(secret) >= MIN_SECRET_LENGTH
        and secret.isascii()
        and secret.isprintable()
        and secret.strip() == secret
    ):
        # Never the value itself: this message reaches Apache's error log.
        raise ConfigError(
            f"config key 'secret' must be at least {MIN_SECRET_LENGTH} printable ASCII"
            " characters without spaces around them"
        )
    show_query_strings = data.get("show_query_strings", False)
    if not isinstance(show_query_strings, bool):
        raise ConfigError(
            f"config key 'show_query_strings' must be true or false, got {show_query_strings!r}"
        )
    metrics_dir = data.get("metrics_dir")
    if metrics_dir is not None and not (
        isinstance(metrics_dir, str) and metrics_dir.startswith("/")
    ):
        raise ConfigError(f"config key 'metrics_dir' must be an absolute path, got {metrics_dir!r}")
    processes, clients_file = _parse_processes(data)
    try:
        fleet = sidecar_fleet.parse_fleet(data["fleet"]) if "fleet" in data else None
        routes = sidecar_trends.parse_routes(data.get("sidecars", []))
    except ValueError as exc:
        raise ConfigError(f"config key {exc}") from None
    return Config(
        name=name,
        origins=tuple(_origin_key(o) for o in origins),
        secret=secret,
        fleet=fleet,
        routes=routes,
        show_query_strings=show_query_strings,
        metrics_dir=metrics_dir,
        processes=processes,
        clients_file=clients_file,
        **_parse_listen(data["listen"]),
        **{key: _positive(data, key) for key in _NUMERIC_KEYS},
    )


def read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a JSON object")
    return data


def load_config(path: str) -> Config:
    try:
        return parse_config(read_config_file(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --- who may reach the listener ------------------------------------------------------------


def secret_matches(presented: str | None, secret: str | None) -> bool:
    """Does a request's SECRET_HEADER carry the secret? Compared in constant time."""
    if secret is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), secret.encode("utf-8"))


# --- cross-site WebSocket hijacking --------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_key(origin: str) -> str:
    """'scheme://host:port' in lower case with the port spelled out; '' if not an origin."""
    try:
        parts = urlsplit(origin.strip().lower())
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number, or out of range
        return ""
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return ""
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return ""
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """May a WebSocket upgrade with this Origin header go ahead?

    A browser always sends Origin on a WebSocket upgrade, and a page of any site
    may open one to us with the user's cookies and credentials: only the site's
    own origin (the host and port the browser addressed, `host`) and the
    configured ones pass. No Origin at all is a non-browser client, which
    cross-site hijacking cannot use, so it passes.
    """
    if origin is None:
        return True
    key = _origin_key(origin)
    if not key:  # "null" (sandboxed frames, file:) or garbage
        return False
    if key in allowed:
        return True
    if not host:
        return False
    scheme = key.split(":", 1)[0]
    own = _origin_key(f"{scheme}://{host.strip()}")
    return bool(own) and own == key


def site_host(headers: Mapping[str, str]) -> str | None:
    """The host and port the browser addressed. Behind mod_proxy that is the last
    X-Forwarded-Host value (Apache appends the real one to any a client sent)."""
    forwarded = headers.get("X-Forwarded-Host")
    if forwarded:
        return forwarded.split(",")[-1].strip()
    return headers.get("Host")


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
STATE_CODES = {state: code for state, (code, _) in _STATES.items()} | {"unknown": "?"}
_LOOKUP = {code: state for state, (code, _) in _STATES.items()} | {
    word: state for state, (_, words) in _STATES.items() for word in words.split()
}
# Left out of the per-tick worker list. Like mod_status, "starting" and "idle_kill" are
# not counted as busy either.
HIDDEN_STATES = frozenset({"ready", "dead"})
NOT_BUSY_STATES = HIDDEN_STATES | {"starting", "idle_kill", "unknown"}
SERVER_KEYS = (
    "server_limit",
    "thread_limit",
    "running_generation",
    "restart_time",
    "current_time",
    "running_time",
)


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
                    "code": STATE_CODES[state],
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
        "summary": summary,
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


def text_frame(text: str) -> bytes:
    """One unfragmented WebSocket text frame (RFC 6455, section 5.2).

    A server never masks its frames, so one tick's frame is the same bytes for
    every client: it is built once and written to each client's socket as is.
    """
    data = text.encode()
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + data


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


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    transport: asyncio.Transport
    peer: str
    # When a tick last found this client's socket with data still unsent.
    backlog_since: float | None = None


def queue_frame(
    client: _Client, frame: bytes, now: float, send_timeout: float, max_send_buffer: int
) -> str | None:
    """Write a frame to a client's socket without waiting; or say why the
    client must be dropped instead: "" when it already left, else the reason
    (it stopped reading, or the write failed). Never raises.

    The write is synchronous, and so is every frame aiohttp itself writes
    (pings, close), so frames never interleave on the socket.
    """
    if client.transport.is_closing() or client.ws.closed:  # left, or missed a heartbeat
        return ""
    buffered = client.transport.get_write_buffer_size()
    if buffered > max_send_buffer:
        return f"{buffered} bytes still unsent"
    if not buffered:
        client.backlog_since = None
    elif client.backlog_since is None:
        client.backlog_since = now
    elif now - client.backlog_since > send_timeout:
        return f"data unsent for longer than {send_timeout}s"
    try:
        client.transport.write(frame)
    except Exception as exc:
        return f"send failed: {exc!r}"
    return None


class Sidecar:
    """Owns the aiohttp app, the connected clients and the single tick task."""

    def __init__(
        self,
        config: Config,
        metrics_source: MetricsSource,
        clock: Callable[[], float] = time.time,
        fleet_redis: tuple[Any, tuple[type[BaseException], ...]] | None = None,
        metrics: sidecar_metrics.Metrics | None = None,
    ) -> None:
        self.config = config
        # The endpoint's counters: shared with the host's other sidecars by run_service.
        self.metrics = metrics or sidecar_metrics.open_metrics(config.name, None)
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
        self.clients: set[_Client] = set()
        # Every client takes a place here from before its handshake until it leaves.
        self.cap = sidecar_clients.client_count(config.max_clients, config.clients_file)
        self.seq = 0
        self.latest: str | None = None
        self._latest_frame = b""
        self._problem: str | None = None
        self.tick_task: asyncio.Task[None] | None = None
        self.app = web.Application(middlewares=[self.require_secret])
        self.app.router.add_get("/", self.handle_index)
        self.app.router.add_get("/ws", self.handle_ws)
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.on_startup.append(self._start_ticks)
        self.app.on_shutdown.append(self._abort_clients)
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
        self._latest_frame = text_frame(text)
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
                await self.broadcast(self._latest_frame)
                self.metrics.fanout.observe(time.monotonic() - started)
            wall = self._clock()
            due = math.floor(wall / interval - phase)
            if due > tick:  # overran: the latest tick due runs now
                tick = due
                await asyncio.sleep(0)
            else:
                tick += 1
                await asyncio.sleep((tick + phase) * interval - wall)

    async def broadcast(self, frame: bytes) -> None:
        """Queue one frame on every client's socket, waiting on none of them;
        between batches the loop runs, so that refusals and handshakes do not
        wait behind thousands of writes."""
        clients = list(self.clients)
        for start in range(0, len(clients), BROADCAST_BATCH):
            if start:
                await asyncio.sleep(0)
            now = time.monotonic()
            for client in clients[start : start + BROADCAST_BATCH]:
                self.send(client, frame, now)

    def send(self, client: _Client, frame: bytes, now: float) -> None:
        """Queue a frame; a failing, slow or backed-up client is dropped. Never raises."""
        problem = queue_frame(
            client, frame, now, self.config.send_timeout, self.config.max_send_buffer
        )
        if problem is not None:
            self.drop(client, problem or None)

    def drop(self, client: _Client, reason: str | None) -> None:
        # Abort rather than close: a close handshake would wait on the very client that is stuck.
        if client in self.clients:
            self.clients.discard(client)
            if reason:
                log.warning("dropping client %s: %s", client.peer, reason)
                self.metrics.dropped_for(reason)
        client.transport.abort()

    @web.middleware
    async def require_secret(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Refuses, before any handler runs, a request that did not come through
        Apache: only Apache knows the secret it adds to each request."""
        if not secret_matches(request.headers.get(SECRET_HEADER), self.config.secret):
            log.warning(
                "refused a request to %s not sent by Apache (no valid secret)", request.path
            )
            raise web.HTTPForbidden(text="only the front end may reach this sidecar\n")
        return await handler(request)

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

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, site_host(request.headers), self.config.origins):
            log.warning("refused a WebSocket from origin %r (cross-site)", origin)
            self.metrics.refused_origin.inc()
            raise web.HTTPForbidden(text="cross-origin WebSocket refused\n")
        # Refuse before the handshake: upgrades in progress count against the cap too.
        if self.cap.admit() is not None:
            self.metrics.refused_at_cap.inc()
            raise web.HTTPServiceUnavailable(text="too many dashboard clients\n")
        try:
            return await self._serve_client(request)
        finally:
            self.cap.release()

    async def _serve_client(self, request: web.Request) -> web.WebSocketResponse:
        transport = request.transport
        if transport is None:
            raise web.HTTPBadRequest(text="connection already closed\n")
        peer = request.headers.get("X-Forwarded-For") or request.remote or "?"
        # compress=False: per-client deflate would undo serialising each tick only once.
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat, compress=False, max_msg_size=4096
        )
        await ws.prepare(request)
        client = _Client(ws, transport, peer)
        self.clients.add(client)
        self.metrics.accepted.inc()
        try:
            if self._latest_frame:
                self.send(client, self._latest_frame, time.monotonic())
            # Reading is what processes pongs and close frames. The one message
            # heeded, once: the page asks for the last ten minutes to chart.
            # Other clients never get them.
            history_sent = False
            async for msg in ws:
                if not history_sent and msg.type == WSMsgType.TEXT and msg.data == HISTORY_REQUEST:
                    self.send(client, text_frame(encode(self.trends.history())), time.monotonic())
                    history_sent = True
        except ConnectionResetError:
            # Dropped (or gone) while aiohttp answered one of its pings: logged
            # once by drop(), not as a failed request with a traceback.
            pass
        finally:
            self.clients.discard(client)
        return ws

    async def _start_ticks(self, _app: web.Application) -> None:
        self.tick_task = asyncio.create_task(self.run_ticks())
        if self.fleet is not None:
            redis, errors = self._fleet_redis or sidecar_fleet.redis_client(self.fleet.config)
            link = sidecar_fleet.FleetLink(
                self.fleet, redis, errors, self.config.poll_interval, self._clock
            )
            self.fleet_task = asyncio.create_task(link.run())

    async def _abort_clients(self, _app: web.Application) -> None:
        for client in list(self.clients):
            self.drop(client, None)

    async def _stop_ticks(self, _app: web.Application) -> None:
        tasks = {t for t in (self.tick_task, self.fleet_task) if t is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.cap.close()


def build_app(config: Config, metrics_source: MetricsSource) -> web.Application:
    return Sidecar(config, metrics_source).app


async def start_site(runner: web.AppRunner, config: Any) -> None:
    """Listen where the config says. The processes of a sidecar of several
    share its TCP port: each binds it with SO_REUSEPORT and the kernel spreads
    new connections over them (only processes of the same user may join)."""
    if config.path is None:
        await web.TCPSite(
            runner,
            config.host,
            config.port,
            backlog=LISTEN_BACKLOG,
            reuse_port=config.processes > 1 or None,
        ).start()
        return
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(config.path).st_mode):
            os.unlink(config.path)  # left behind by a previous daemon process
    await web.UnixSite(runner, config.path, backlog=LISTEN_BACKLOG).start()
    os.chmod(config.path, 0o660)


async def watch_socket(path: str, interval: float) -> None:
    """Returns once the socket file at `path` is no longer the one bound now.

    Removed or replaced (a tmp cleaner, an operator's rm), it leaves Apache
    nothing to connect to while this process would serve on, unreachable.
    """
    inode = os.stat(path).st_ino
    while True:
        await asyncio.sleep(interval)
        try:
            if os.stat(path).st_ino == inode:
                continue
        except FileNotFoundError:
            pass
        return


async def serve_app(
    app: web.Application,
    config: Any,
    essentials: Callable[[], dict[asyncio.Future[Any], str]],
    what: str,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `app` on the config's listener (its `path`, or `host` and
    `port`) until `stop` is set. Raises if the site cannot start, one of the
    app's essential tasks ends (`essentials()`, called once the app started
    them: task -> what its end means), or a unix socket listener loses its
    socket file. Shared by the built-in sidecars."""
    runner = web.AppRunner(app, access_log=None)  # Apache already logs the requests
    await runner.setup()
    essential: dict[asyncio.Future[Any], str] = {}
    watch: asyncio.Future[None] | None = None
    try:
        await start_site(runner, config)
        log.info("serving %s on %s", what, config.listen_url)
        essential = essentials()
        if config.path is not None:
            watch = asyncio.ensure_future(watch_socket(config.path, SOCKET_CHECK_INTERVAL))
            essential[watch] = f"unix socket {config.path} was removed or replaced"
        stopped = asyncio.ensure_future((stop or asyncio.Event()).wait())
        try:
            await asyncio.wait({*essential, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        for task, problem in essential.items():
            if task.done():
                raise RuntimeError(problem) from (None if task.cancelled() else task.exception())
    finally:
        if watch is not None:
            watch.cancel()
        # The app's own tasks end with it (its on_cleanup hooks).
        await asyncio.wait_for(runner.cleanup(), CLEANUP_TIMEOUT)


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

    await serve_app(
        sidecar.app, config, essentials, f"dashboard every {config.poll_interval}s", stop
    )


def run_until_exit(
    serving: Callable[[], Any],
    exit_hook: Callable[[int], NoReturn],
    restart_delay: float,
) -> NoReturn:
    """Run `serving()` (a coroutine) for the life of the process. mod_wsgi turns
    the SIGTERM of an Apache restart or stop into SystemExit in a service
    script: an orderly end. Any other end of the loop exits the process, after
    `restart_delay`, so that mod_wsgi starts a fresh daemon process."""
    try:
        asyncio.run(serving())
    except SystemExit:
        log.info("stopping: Apache is restarting or stopping this daemon process")
        exit_hook(0)
    except BaseException:
        log.critical("serving loop died, exiting so mod_wsgi restarts this process", exc_info=True)
    time.sleep(restart_delay)
    exit_hook(1)


def setup_logging(name: str, timestamps: bool = False) -> None:
    # Under mod_wsgi stderr goes to Apache's error log, which adds its own timestamps.
    prefix = "%(asctime)s " if timestamps else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"{prefix}{name.replace('%', '%%')}: %(levelname)s %(message)s")
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def run_service(
    config_path: str,
    *,
    metrics_source: MetricsSource | None = None,
    exit_hook: Callable[[int], NoReturn] = os._exit,
    restart_delay: float = RESTART_DELAY,
) -> NoReturn:
    """Entry point for the mod_wsgi service script; serves for the life of the process.

    Bad config or a missing mod_wsgi raise (a restart would not help). Once serving, any
    death of the loop exits the process so mod_wsgi starts a fresh daemon process.
    """
    config = load_config(config_path)
    setup_logging(config.name)
    if metrics_source is None:
        import mod_wsgi  # only importable inside Apache

        metrics_source = mod_wsgi.server_metrics
    source = metrics_source
    if config.metrics_dir is not None:
        sidecar_metrics.prune_dead(config.metrics_dir)
    metrics = sidecar_metrics.open_metrics(config.name, config.metrics_dir)
    run_until_exit(lambda: serve(config, source, metrics=metrics), exit_hook, restart_delay)


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
    data: dict[str, Any] = read_config_file(args.config) if args.config else {}
    data.setdefault("listen", {"host": _DEFAULTS.host, "port": _DEFAULTS.port})
    if args.listen:
        if args.listen.startswith("/"):
            data["listen"] = {"path": args.listen}
        else:
            host, _, port = args.listen.rpartition(":")
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
    setup_logging(config.name, timestamps=True)
    try:
        asyncio.run(_serve_until_signalled(config, _standalone_source()))
    except Exception:
        log.critical("serving loop died", exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
