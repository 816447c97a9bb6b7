"""What every WebSocket sidecar of this package stands on.

- Its settings: the listener, the client limits, who may connect
  (ServerConfig, parse_server), with the defaults of defaults.json.
- Its clients (WebSocketServer): admission under a cap shared by the
  sidecar's processes, sending without ever waiting on a slow client,
  dropping it instead, one frame to everyone, the secret Apache adds to
  every request, the origin check and the WebSocket handler, whose hooks
  (opened, welcome, received, closed) an application overrides.
- Serving it as a mod_wsgi service script: the listener (TCP, with
  SO_REUSEPORT for several processes, or a unix socket watched for
  removal), the essential tasks, and the end of the process that lets
  mod_wsgi start a fresh one.

The dashboard (dashboard.py) and the push channel (push_sidecar.py) are two
applications on it; docs/sidecars.md shows a user's own. Standard library
and aiohttp (3.8 to 3.11, public APIs only).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from . import clients as client_counts
from . import metrics as sidecar_metrics

log = logging.getLogger("mod_wsgi_ws_sidecar")

# The one source of the settings a sidecar may leave out, read by the role's
# plan on the controller too.
DEFAULTS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "defaults.json").read_text(encoding="utf-8")
)
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
# The longest pause between two batches of a paced broadcast: a few hundred
# clients are not kept waiting for a whole spread.
BATCH_PAUSE = 0.025
# Connections the kernel queues for the listener before it accepts them
# (aiohttp's default is 128; Linux caps it at net.core.somaxconn). A burst
# that overflows the queue has its SYNs dropped, and Apache's connects then
# retry after 1 s and 3 s: clients refused late, or left hanging.
LISTEN_BACKLOG = 4096
# The role writes 43 characters (32 random bytes); shorter is too guessable.
MIN_SECRET_LENGTH = 32


# --- configuration -------------------------------------------------------------------------


class ConfigError(ValueError):
    """The sidecar configuration is invalid; the message names the offending key."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """What every sidecar's NAME.json says about its listener and its clients."""

    name: str = "sidecar"
    host: str = "127.0.0.1"
    port: int = 8765
    path: str | None = None  # unix socket; host and port are unused when set
    heartbeat: float = DEFAULTS["heartbeat"]
    max_clients: int = DEFAULTS["max_clients"]
    send_timeout: float = DEFAULTS["send_timeout"]
    max_send_buffer: int = DEFAULTS["max_send_buffer"]
    # Origins allowed to open a WebSocket besides the site's own (lower case).
    origins: tuple[str, ...] = ()
    # What SECRET_HEADER must carry; None admits any request (standalone use).
    secret: str | None = field(default=None, repr=False)
    # Where the built-in sidecars keep their Prometheus counters (metrics.py).
    metrics_dir: str | None = None
    # Processes of the sidecar sharing its TCP port (SO_REUSEPORT), and the
    # file where they keep the count of their clients (clients.py).
    processes: int = 1
    clients_file: str | None = None

    @property
    def listen_url(self) -> str:
        return f"unix:{self.path}" if self.path else f"http://{self.host}:{self.port}"


SERVER_NUMBERS = ("heartbeat", "max_clients", "send_timeout", "max_send_buffer")
SERVER_KEYS = frozenset(
    {"name", "listen", "origins", "secret", "metrics_dir", "processes", "clients_file"}
    | set(SERVER_NUMBERS)
)


def positive(data: Mapping[str, Any], key: str, default: int | float) -> Any:
    """data[key] (else the default) as a positive number of the default's type."""
    value = data.get(key, default)
    integer = isinstance(default, int)
    types = int if integer else int | float
    # bool is an int subclass; the chained comparison also rejects NaN and infinity
    if isinstance(value, bool) or not isinstance(value, types) or not 0 < value < math.inf:
        kind = "integer" if integer else "number"
        raise ConfigError(f"config key {key!r} must be a positive {kind}, got {value!r}")
    return type(default)(value)


def absolute_path(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not (isinstance(value, str) and value.startswith("/")):
        raise ConfigError(f"config key {key!r} must be an absolute path, got {value!r}")
    return value


def optional_text(data: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    """data[key]: a string, or None when absent or empty."""
    value = data.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"config key '{prefix}{key}' must be a string")
    return value


def check_keys(data: Any, allowed: set[str] | frozenset[str]) -> None:
    if not isinstance(data, dict):
        raise ConfigError("config must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}")


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
    host = listen.get("host", ServerConfig.host)
    if not isinstance(host, str) or not host:
        raise ConfigError(f"config key 'listen.host' must be a non-empty string, got {host!r}")
    if "port" not in listen:
        raise ConfigError("missing config key 'listen.port' (or give 'listen.path')")
    port = listen["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"config key 'listen.port' must be an integer 1-65535, got {port!r}")
    return {"host": host, "port": port}


def _parse_processes(data: Mapping[str, Any]) -> dict[str, Any]:
    """`processes` and `clients_file`: several processes share a TCP port and
    keep their count of clients in that file."""
    processes = data.get("processes", 1)
    limit = client_counts.MAX_PROCESSES
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= limit:
        raise ConfigError(f"config key 'processes' must be an integer 1-{limit}, got {processes!r}")
    clients_file = absolute_path(data, "clients_file")
    if processes > 1 and clients_file is None:
        raise ConfigError("config key 'processes' above 1 needs 'clients_file' (their count)")
    if processes > 1 and isinstance(data.get("listen"), dict) and "path" in data["listen"]:
        raise ConfigError(
            "config key 'processes' above 1 needs a TCP listener: Linux spreads connections"
            " over the processes of a port (SO_REUSEPORT), not of a unix socket"
        )
    return {"processes": processes, "clients_file": clients_file}


def _parse_secret(data: Mapping[str, Any]) -> str | None:
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
    return secret


def parse_server(data: Mapping[str, Any], default_name: str) -> dict[str, Any]:
    """The ServerConfig fields of a decoded NAME.json (its SERVER_KEYS), checked."""
    if "listen" not in data:
        raise ConfigError("missing config key 'listen'")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.isprintable() or not name.strip():
        raise ConfigError(f"config key 'name' must be a non-empty printable string, got {name!r}")
    origins = data.get("origins", [])
    if not isinstance(origins, list) or not all(
        isinstance(o, str) and origin_key(o) for o in origins
    ):
        raise ConfigError(
            f"config key 'origins' must list origins like 'https://host:port', got {origins!r}"
        )
    return {
        "name": name,
        "origins": tuple(origin_key(o) for o in origins),
        "secret": _parse_secret(data),
        "metrics_dir": absolute_path(data, "metrics_dir"),
        **_parse_processes(data),
        **_parse_listen(data["listen"]),
        **{key: positive(data, key, DEFAULTS[key]) for key in SERVER_NUMBERS},
    }


def read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a JSON object")
    return data


def load_config(path: str, parse: Callable[[Any], Any]) -> Any:
    """`parse` (an application's parse_config) of the JSON file at `path`."""
    try:
        return parse(read_config_file(path))
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


def origin_key(origin: str) -> str:
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
    key = origin_key(origin)
    if not key:  # "null" (sandboxed frames, file:) or garbage
        return False
    if key in allowed:
        return True
    if not host:
        return False
    scheme = key.split(":", 1)[0]
    own = origin_key(f"{scheme}://{host.strip()}")
    return bool(own) and own == key


def site_host(headers: Mapping[str, str]) -> str | None:
    """The host and port the browser addressed. Behind mod_proxy that is the last
    X-Forwarded-Host value (Apache appends the real one to any a client sent)."""
    forwarded = headers.get("X-Forwarded-Host")
    if forwarded:
        return forwarded.split(",")[-1].strip()
    return headers.get("Host")


# --- frames and clients --------------------------------------------------------------------


def text_frame(text: str) -> bytes:
    """A whole unmasked WebSocket text frame (FIN set) carrying `text`.

    A server never masks its frames, so one frame is the same bytes for
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


@dataclass(eq=False)
class Client:
    ws: web.WebSocketResponse
    transport: asyncio.Transport
    peer: str
    # When a send last found this client's socket with data still unsent.
    backlog_since: float | None = None

    @property
    def gone(self) -> bool:
        """Left, or missed a heartbeat."""
        return self.transport.is_closing() or self.ws.closed


def queue_frame(
    client: Client, frame: bytes, now: float, send_timeout: float, max_send_buffer: int
) -> str | None:
    """Write a frame to a client's socket without waiting; or say why the
    client must be dropped instead: "" when it already left, else the reason
    (it stopped reading, or the write failed). Never raises.

    The write is synchronous, and so is every frame aiohttp itself writes
    (pings, close), so frames never interleave on the socket.
    """
    if client.gone:
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


class WebSocketServer:
    """One sidecar's clients and its aiohttp application: every request must
    carry the secret, `/ws` takes WebSockets up to the cap, and frames are
    queued on the clients' sockets, never awaited. An application subclasses
    it, adds its routes to `self.app`, and overrides the hooks `opened`,
    `welcome`, `received` and `closed`; `self.clients` maps each client to what
    `opened` returned for it."""

    def __init__(
        self,
        config: ServerConfig,
        metrics: sidecar_metrics.Metrics,
        logger: logging.Logger,
        *,
        what: str,
        max_message: int = 4096,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.log = logger
        # Said to a client refused at the cap: "too many WHAT clients".
        self.what = what
        self.max_message = max_message
        self.clients: dict[Client, Any] = {}
        # Every client takes a place here from before its handshake until it leaves.
        self.cap = client_counts.client_count(config.max_clients, config.clients_file)
        self.app = web.Application(middlewares=[self.require_secret])
        self.app.router.add_get("/ws", self.handle_ws)
        self.app.on_shutdown.append(self._abort_clients)

    # --- hooks -------------------------------------------------------------
    def opened(self, client: Client) -> Any:
        """A client completed its handshake; returns what the server keeps
        for it (sending is for `welcome`)."""
        return None

    def welcome(self, client: Client) -> None:
        """What a client is sent first, once it is one of `self.clients`."""

    async def received(self, client: Client, text: str) -> None:
        """A text message from the client (at most `max_message` bytes)."""

    def closed(self, client: Client, state: Any) -> None:
        """The client left or was dropped; `state` is what `opened` returned."""

    # --- sending -----------------------------------------------------------
    def send(self, client: Client, frame: bytes, now: float | None = None) -> None:
        """Queue a frame; a failing, slow or backed-up client is dropped. Never raises."""
        c = self.config
        moment = time.monotonic() if now is None else now
        problem = queue_frame(client, frame, moment, c.send_timeout, c.max_send_buffer)
        if problem is not None:
            self.drop(client, problem or None)

    def send_text(self, client: Client, text: str) -> None:
        self.send(client, text_frame(text))

    async def broadcast(self, frame: bytes, spread: float = 0.0) -> None:
        """Queue one frame on every client's socket, waiting on none of them;
        between batches the loop runs, so that refusals and handshakes do not
        wait behind thousands of writes. With `spread` (seconds), the batches
        are paced until that long after the start, at most BATCH_PAUSE apart:
        the front end relaying the frames and the clients reading them get
        the burst in slices, and the host's other work (the WSGI application)
        gets the cores between them. Pacing never makes a broadcast longer
        than its spread: sends slower than that are not paused at all."""
        clients = list(self.clients)
        batches = math.ceil(len(clients) / BROADCAST_BATCH)
        deadline = time.monotonic() + spread
        for batch in range(batches):
            if batch:
                # The batches left, this one included, share the time left.
                left = max(0.0, deadline - time.monotonic()) / (batches - batch)
                await asyncio.sleep(min(BATCH_PAUSE, left))
            now = time.monotonic()
            for client in clients[batch * BROADCAST_BATCH : (batch + 1) * BROADCAST_BATCH]:
                self.send(client, frame, now)

    def drop(self, client: Client, reason: str | None) -> None:
        """End a client, saying why (None: quietly, it left or we stop).
        Aborted rather than closed: a close handshake would wait on the very
        client that is stuck."""
        known = self.forget(client)
        if reason:
            self.log.warning("dropping client %s: %s", client.peer, reason)
            if known:
                self.metrics.dropped_for(reason)
        client.transport.abort()

    def forget(self, client: Client) -> bool:
        """Remove a client and run `closed` for it; False if it was not one."""
        if client not in self.clients:
            return False
        self.closed(client, self.clients.pop(client))
        return True

    # --- HTTP --------------------------------------------------------------
    @web.middleware
    async def require_secret(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Refuses, before any handler runs, a request that did not come through
        Apache: only Apache knows the secret it adds to each request."""
        if not secret_matches(request.headers.get(SECRET_HEADER), self.config.secret):
            self.log.warning(
                "refused a request to %s not sent by Apache (no valid secret)", request.path
            )
            raise web.HTTPForbidden(text="only the front end may reach this sidecar\n")
        return await handler(request)

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, site_host(request.headers), self.config.origins):
            self.log.warning("refused a WebSocket from origin %r (cross-site)", origin)
            self.metrics.refused_origin.inc()
            raise web.HTTPForbidden(text="cross-origin WebSocket refused\n")
        # Refuse before the handshake: upgrades in progress count against the cap too.
        if self.cap.admit() is not None:
            self.metrics.refused_at_cap.inc()
            raise web.HTTPServiceUnavailable(text=f"too many {self.what} clients\n")
        try:
            return await self._serve_client(request)
        finally:
            self.cap.release()

    async def _serve_client(self, request: web.Request) -> web.WebSocketResponse:
        transport = request.transport
        if transport is None:
            raise web.HTTPBadRequest(text="connection already closed\n")
        peer = request.headers.get("X-Forwarded-For") or request.remote or "?"
        # compress=False: per-client deflate would undo building each frame only once.
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat, compress=False, max_msg_size=self.max_message
        )
        await ws.prepare(request)
        client = Client(ws, transport, peer)
        self.clients[client] = self.opened(client)
        self.metrics.accepted.inc()
        try:
            self.welcome(client)
            # Reading is what processes pongs and close frames.
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and client in self.clients:
                    await self.received(client, msg.data)
        except ConnectionResetError:
            # Dropped (or gone) while aiohttp answered one of its pings: logged
            # once by drop(), not as a failed request with a traceback.
            pass
        finally:
            self.forget(client)
        return ws

    async def _abort_clients(self, _app: web.Application) -> None:
        for client in list(self.clients):
            self.drop(client, None)


# --- serving -------------------------------------------------------------------------------


async def start_site(runner: web.AppRunner, config: ServerConfig) -> None:
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
    config: ServerConfig,
    essentials: Callable[[], dict[asyncio.Future[Any], str]],
    what: str,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `app` on the config's listener until `stop` is set. Raises if
    the site cannot start, one of the app's essential tasks ends
    (`essentials()`, called once the app started them: task -> what its end
    means), or a unix socket listener loses its socket file."""
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


async def stop_tasks(tasks: Sequence[asyncio.Task[Any] | None]) -> None:
    """Cancel the tasks that were started and wait for them to end."""
    started = {t for t in tasks if t is not None}
    for task in started:
        task.cancel()
    if started:
        await asyncio.wait(started)


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
