"""Push channel sidecar: relays what the WSGI application publishes to browsers.

The application appends messages to Redis Streams, one per channel
(mod_wsgi_ws_sidecar.push.publish). Browsers open a WebSocket here and
subscribe to channels; this process reads every stream someone watches with
one blocking XREAD and writes each message, framed once, to every
subscriber's socket (core.WebSocketServer's fan-out: never waiting on a
slow client).

Every message carries its position (the stream entry's ID). A client that
comes back after a network blip, a restart of this process or of Apache
asks for what followed its last position and gets exactly that, once and in
order, before any newer message; if the history no longer reaches back that
far, or Redis lost its data (a new epoch), it is told to reset instead of
silently missing messages (what proves a replay complete: resume_problem).
A channel is private unless it matches `public_channels`: subscribing needs
a token the application signed, and the subscription ends when the token
expires (unless the client renews it) or the application revokes it.
Whatever a browser sends, what it can make this process hold or do is
bounded (docs/push.md).

An application on the package's core (core.py); runs as a mod_wsgi service
script (run_service), like the dashboard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from . import core
from . import metrics as sidecar_metrics
from . import push as shared
from .core import ConfigError

log = logging.getLogger("push")

# How long one XREAD blocks: a channel first watched meanwhile joins the read after it.
BLOCK_MS = 500
# Entries taken per stream per read; more wait for the next read, in order.
READ_COUNT = 500
# Connections for everything but the relay's read: each subscribe takes one
# for a round trip or two (under a millisecond on a LAN), so 8 serve
# thousands of subscribes a second; past them a command waits up to
# REDIS_POOL_WAIT seconds, then the subscribe is refused as unavailable.
REDIS_POOL = 8
REDIS_POOL_WAIT = 5.0
# Backoff between attempts to reach Redis again.
RETRY_FIRST, RETRY_MAX = 0.5, 5.0
MAX_CLIENT_MESSAGE = 4096
# Entries read per XRANGE of a replay; each page is sent at the pace the client reads.
REPLAY_PAGE = 50
# Subscribe and unsubscribe requests per second a connection may sustain; a
# page may send twice its channel allowance at once (opening, and a retry).
REQUESTS_PER_SECOND = 10.0
# How often a replay waits to see a slow client's buffer drain.
DRAIN_POLL = 0.01
# How often the memory Redis uses and its channels are counted, for the metrics.
REDIS_STATS_INTERVAL = 10.0
# How often tokens are checked for expiry: a subscription ends this soon after.
EXPIRY_CHECK = 0.25
REQUESTS = ("subscribe", "renew", "unsubscribe")
PAGE = Path(__file__).resolve().parent / "push.html"
SCRIPT = Path(__file__).resolve().parent / "push.js"

Position = tuple[int, int]


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PushConfig(core.ServerConfig):
    name: str = "push"
    port: int = 8766
    redis_url: str
    token_secret: str = field(repr=False)
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_ca_file: str | None = None
    public_channels: tuple[str, ...] = ()
    # Messages each channel keeps; channels one connection may hold; messages
    # one resume may replay before the client is told to reset instead.
    history: int = core.DEFAULTS["history"]
    max_channels: int = core.DEFAULTS["max_channels"]
    max_replay: int = core.DEFAULTS["max_replay"]
    # Seconds a channel nobody publishes to is kept (its stream expires).
    channel_ttl: int = core.DEFAULTS["channel_ttl"]

    @property
    def prefix(self) -> str:
        return shared.key_prefix(self.name)


NUMBERS = ("history", "max_channels", "max_replay", "channel_ttl")
KEYS = core.SERVER_KEYS | {
    *NUMBERS,
    *("kind", "redis", "token_secret", "public_channels", "publish_timeout"),
}


def parse_config(data: Any) -> PushConfig:
    """Validate the role-written NAME.json (decoded) of a push sidecar."""
    core.check_keys(data, KEYS)
    server = data.get("redis")
    if not isinstance(server, dict) or not isinstance(server.get("url"), str):
        raise ConfigError("config key 'redis' must be an object with a 'url'")
    if not str(server["url"]).startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("config key 'redis.url' must be a redis://, rediss:// or unix:// URL")
    token_secret = data.get("token_secret")
    if not isinstance(token_secret, str) or len(token_secret) < core.MIN_SECRET_LENGTH:
        raise ConfigError(
            f"config key 'token_secret' must be at least {core.MIN_SECRET_LENGTH} characters"
        )
    public = data.get("public_channels", [])
    if not isinstance(public, list) or not all(isinstance(p, str) and p for p in public):
        raise ConfigError("config key 'public_channels' must list channel patterns")
    return PushConfig(
        **core.parse_server(data, PushConfig.name),
        redis_url=server["url"],
        redis_username=core.optional_text(server, "username", "redis."),
        redis_password=core.optional_text(server, "password", "redis."),
        redis_ca_file=core.optional_text(server, "ca_file", "redis."),
        token_secret=token_secret,
        public_channels=tuple(public),
        **{key: core.positive(data, key, core.DEFAULTS[key]) for key in NUMBERS},
    )


# --- positions, resume and access (pure) ---------------------------------------------------


def position(text: Any) -> Position | None:
    """A stream entry ID "MS-SEQ" as a pair that compares in stream order."""
    if not isinstance(text, str) or text.count("-") != 1 or not text.isascii():
        return None
    ms, seq = text.split("-")
    if not (ms.isdigit() and seq.isdigit()) or len(ms) > 20 or len(seq) > 20:
        return None
    return int(ms), int(seq)


def entry_id(at: Position) -> str:
    return f"{at[0]}-{at[1]}"


@dataclass(frozen=True)
class StreamState:
    """A channel's history at one instant, as Redis tells it (XINFO STREAM
    and TIME in one transaction). A channel never published to, or expired,
    has no stream: nothing held, nothing added."""

    now_ms: int
    exists: bool = False
    # The oldest entry held (None: none), and the newest ever added.
    first: Position | None = None
    last: Position = (0, 0)
    length: int = 0
    # Every entry ever added (Redis 7's entries-added), and the newest entry
    # removed by XDEL (max-deleted-entry-id; trimming may not count).
    added: int = 0
    deleted: Position = (0, 0)


def stream_state(info: Mapping[str, Any] | None, now_ms: int) -> StreamState:
    if info is None:
        return StreamState(now_ms=now_ms)
    first = info.get("first-entry")
    return StreamState(
        now_ms=now_ms,
        exists=True,
        first=position(first[0]) if first else None,
        last=position(info.get("last-generated-id")) or (0, 0),
        length=int(info.get("length", 0)),
        added=int(info.get("entries-added", 0)),
        deleted=position(info.get("max-deleted-entry-id")) or (0, 0),
    )


def start_position(stream: StreamState) -> str:
    """Where a new subscription stands: after every entry added so far, and
    before every entry added later: the newest entry's ID. For a channel with
    no message yet, that
    is a point in Redis's time: a new stream's IDs start at Redis's clock,
    so the millisecond before now is older than any of them. Never "0-0",
    which would stand before messages added and trimmed while the client was
    away."""
    if stream.added:
        return entry_id(stream.last)
    return entry_id((stream.now_ms - 1, 0))


def resume_problem(
    since: Any, client_epoch: Any, epoch: str, stream: StreamState, ttl_ms: int | None = None
) -> str | None:
    """Why a client's position cannot be resumed from (None: replay what
    followed it). Every message added after `since` must still be held.

    A stream loses entries by trimming (XADD MAXLEN: the oldest go) and by
    XDEL. The history reaches back far enough when nothing after `since` was
    deleted and either nothing was ever added after it, or the oldest entry
    held is `since` or older, or nothing was ever trimmed (entries-added is
    the length). When only `since` itself is gone, the client is told to
    reset although it may have missed nothing: it cannot be told apart from
    a gap.

    A channel idle for `ttl_ms` expires (its stream is gone) and may be
    created again: a client whose position is that old may have missed a
    whole life of the channel, so it resets.
    """
    if client_epoch != epoch:
        return "the history was lost (Redis started afresh)"
    at = position(since)
    if at is None:
        return "not a position"
    if ttl_ms is not None:
        # What is held now began no earlier than this (nothing held: now).
        begun = stream.first or (stream.now_ms, 0)
        if begun > at and begun[0] - at[0] >= ttl_ms:
            return "the channel expired meanwhile"
    if at >= stream.last:
        return None
    if stream.deleted > at:
        return "messages after that position were deleted"
    if stream.first is not None and stream.first <= at:
        return None
    if stream.added == stream.length:
        return None
    return "the history no longer reaches back that far"


def is_public(channel: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(channel, p) for p in patterns)


class Revocations:
    """What the application revoked (push.revoke) within
    a token's lifetime: by subject, by channel, or one subject on one channel,
    each with the moment (ms) before which the tokens it names were signed."""

    def __init__(self) -> None:
        self.moments: dict[tuple[str | None, str | None], int] = {}

    def add(self, fields: Mapping[str, str]) -> tuple[str | None, str | None, int] | None:
        """Take one entry of the control stream; the revocation, or None if it is none."""
        try:
            found = json.loads(fields.get("revoke", ""))
            subject, channel, at = found["subject"], found["channel"], int(found["at"])
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(subject, str | None) or not isinstance(channel, str | None):
            return None
        key = (subject, channel)
        self.moments[key] = max(at, self.moments.get(key, at))
        return subject, channel, at

    def revokes(self, channel: str, grant: shared.Grant) -> bool:
        for key in ((grant.subject, channel), (None, channel), (grant.subject, None)):
            if key[0] is None and key[1] is None:
                continue
            at = self.moments.get(key)
            if at is not None and grant.issued_ms <= at:
                return True
        return False

    def forget_before(self, at_ms: int) -> None:
        """Revocations older than any token still alive are not needed."""
        self.moments = {k: at for k, at in self.moments.items() if at >= at_ms}


def ended_by(
    revocation: tuple[str | None, str | None, int], channel: str, grant: shared.Grant
) -> bool:
    subject, revoked_channel, at = revocation
    return (
        (subject is None or subject == grant.subject)
        and (revoked_channel is None or revoked_channel == channel)
        and grant.issued_ms <= at
    )


def access(
    config: PushConfig, channel: Any, token: Any, now: float, revoked: Revocations
) -> shared.Grant | str | None:
    """Whether `channel` may be subscribed to: a problem (refused), None (a
    public channel), or what the token grants (until when, for whom)."""
    if not shared.valid_channel(channel):
        return "not a channel name"
    if is_public(channel, config.public_channels):
        return None
    grant = shared.read_token(config.token_secret, channel, token, now)
    if isinstance(grant, shared.Grant) and revoked.revokes(channel, grant):
        return "token revoked"
    return grant


def message_text(channel: str, entry_id: str, fields: Mapping[str, str]) -> str | None:
    """The frame text of one stream entry, or None if it is not a message
    the application published (not JSON)."""
    data = fields.get("d")
    if data is None:
        return None
    try:
        json.loads(data)
    except ValueError:
        return None
    return f'{{"type":"message","channel":{json.dumps(channel)},"id":"{entry_id}","data":{data}}}'


def control_text(kind: str, **values: Any) -> str:
    return json.dumps({"type": kind, **values}, separators=(",", ":"))


def expiry(grant: shared.Grant | None, now: float) -> dict[str, float]:
    """The seconds a subscription's token has left, as its frames tell them
    (relative: the browser's clock may be wrong)."""
    return {} if grant is None else {"expires_in": round(max(0.0, grant.expires - now), 1)}


def parse_request(raw: Any) -> dict[str, Any] | None:
    """A client's subscribe, renew or unsubscribe request, or None for anything else
    (not JSON, nested too deep to decode, another type)."""
    try:
        request = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(request, dict) or request.get("type") not in REQUESTS:
        return None
    return request


class RequestBudget:
    """A token bucket: `rate` requests a second sustained, `burst` at once."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# --- server --------------------------------------------------------------------------------


@dataclass(eq=False)
class Channel:
    name: str
    key: str
    # Where the relay reads from: the newest entry delivered to live
    # subscribers, or the point the channel was first watched from.
    last_id: str | None = None
    starting: asyncio.Future[str] | None = None
    subscribers: dict[core.Client, Subscription] = field(default_factory=dict)


@dataclass(eq=False)
class Subscription:
    client: core.Client
    channel: Channel
    # While the client catches up, live messages wait here: (position, frame).
    pending: list[tuple[Position, bytes]] | None = field(default_factory=list)
    pending_bytes: int = 0
    # What its token grants (None: a public channel): it ends at expiry or on revocation.
    grant: shared.Grant | None = None
    # A client that came from a host whose relay was ahead of this one's
    # already holds the messages up to here.
    floor: Position | None = None


@dataclass(eq=False)
class Connection:
    budget: RequestBudget
    subs: dict[str, Subscription] = field(default_factory=dict)


class PushSidecar(core.WebSocketServer):
    """The WebSocket side (subscriptions, on core.WebSocketServer) and the
    Redis side (one relay task)."""

    def __init__(
        self,
        config: PushConfig,
        feed: Any,
        query: Any,
        errors: tuple[type, ...],
        metrics: sidecar_metrics.Metrics | None = None,
    ):
        super().__init__(
            config,
            metrics or sidecar_metrics.open_metrics(config.name, None, push=True),
            log,
            what="push",
            max_message=MAX_CLIENT_MESSAGE,
        )
        self.config: PushConfig = config
        # feed: the relay's blocking XREAD; query: everything else.
        self.feed, self.query, self.errors = feed, query, errors
        self.clients: dict[core.Client, Connection]
        self.channels: dict[str, Channel] = {}
        self.epoch: str | None = None
        self.feed_problem: str | None = "not connected to Redis yet"
        # Subscriptions made with a token, checked for expiry; the revocations
        # read from the control stream, and how far.
        self.granted: dict[Subscription, None] = {}
        self.revoked = Revocations()
        self.control = shared.control_key(config.prefix)
        self.control_last: str | None = None
        # A read this long may have missed entries trimmed before it: checked.
        self.full_read = min(config.history, READ_COUNT)
        self.ttl_ms = config.channel_ttl * 1000
        self._wake = asyncio.Event()
        self.app.router.add_get("/", self.handle_index)
        self.app.router.add_get("/push.js", self.handle_script)
        self.relay_task: asyncio.Task[None] | None = None
        self.expiry_task: asyncio.Task[None] | None = None
        self.stats_task: asyncio.Task[None] | None = None
        self.app.on_startup.append(self._start_relay)
        self.app.on_cleanup.append(self._stop_relay)

    # --- clients (core.WebSocketServer's hooks) ----------------------------
    def opened(self, client: core.Client) -> Connection:
        burst = 2 * self.config.max_channels
        return Connection(RequestBudget(REQUESTS_PER_SECOND, burst, time.monotonic()))

    def welcome(self, client: core.Client) -> None:
        if self.feed_problem is not None:
            self.send_text(client, control_text("status", feed="interrupted"))

    def closed(self, client: core.Client, state: Connection) -> None:
        for sub in state.subs.values():
            self._unsubscribe(sub)

    # --- sending -----------------------------------------------------------
    async def send_paced(self, client: core.Client, frame: bytes) -> bool:
        """Send a replayed frame once the client's unsent bytes leave room for
        it under the buffer limit (or none are left); False if the client
        is gone, or dropped for not reading within the send timeout."""
        c = self.config
        deadline = time.monotonic() + c.send_timeout
        while True:
            if client not in self.clients or client.gone:
                return False
            buffered = client.transport.get_write_buffer_size()
            if not buffered or buffered + len(frame) <= c.max_send_buffer:
                break
            if time.monotonic() > deadline:
                self.drop(client, f"replay unread for longer than {c.send_timeout}s")
                return False
            await asyncio.sleep(DRAIN_POLL)
        try:
            client.transport.write(frame)
        except Exception as exc:
            self.drop(client, f"send failed: {exc!r}")
            return False
        return True

    def _unsubscribe(self, sub: Subscription) -> None:
        channel = sub.channel
        channel.subscribers.pop(sub.client, None)
        self.granted.pop(sub, None)
        if not channel.subscribers and self.channels.get(channel.name) is channel:
            del self.channels[channel.name]

    def end(self, sub: Subscription, kind: str, reason: str) -> None:
        """End one subscription from this side (its token expired or was revoked)."""
        conn = self.clients.get(sub.client)
        if conn is not None and conn.subs.get(sub.channel.name) is sub:
            del conn.subs[sub.channel.name]
        self._unsubscribe(sub)
        self.send_text(sub.client, control_text(kind, channel=sub.channel.name, reason=reason))

    def tell_everyone(self, text: str) -> None:
        frame = core.text_frame(text)
        for client in list(self.clients):
            self.send(client, frame)

    def tell_subscribers(self, channel: Channel, at: Position, frame: bytes) -> None:
        """A frame in the channel's order: after what each subscriber already
        has, so one still catching up gets it after its replay."""
        for sub in list(channel.subscribers.values()):
            if sub.floor is not None:
                if at <= sub.floor:
                    continue
                sub.floor = None
            if sub.pending is None:
                self.send(sub.client, frame)
                continue
            sub.pending.append((at, frame))
            sub.pending_bytes += len(frame)
            if sub.pending_bytes > self.config.max_send_buffer:
                self.drop(
                    sub.client,
                    f"{sub.pending_bytes} bytes of live messages waiting behind its replay",
                )

    # --- the relay -------------------------------------------------------
    async def relay(self) -> None:
        """Reads every watched stream and fans each new entry out. Never ends
        on a Redis failure: it says so to the clients and tries again."""
        delay = RETRY_FIRST
        while True:
            try:
                if self.feed_problem is not None:
                    await self._reconnect()
                live = [ch for ch in self.channels.values() if ch.last_id is not None]
                if not live:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                # The revocations, read with the channels while anyone is subscribed.
                streams = {ch.key: ch.last_id for ch in live}
                if self.control_last is not None:
                    streams[self.control] = self.control_last
                reply = await self.feed.xread(streams, count=READ_COUNT, block=BLOCK_MS)
                by_key = {ch.key: ch for ch in live}
                for key, entries in reply or ():
                    if key == self.control:
                        self.take_revocations(entries)
                        continue
                    channel = by_key.get(key)
                    if channel is None or self.channels.get(channel.name) is not channel:
                        continue
                    if len(entries) >= self.full_read and await self._missed_some(channel):
                        continue
                    self.deliver(channel, entries)
            except self.errors as exc:
                self._feed_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_FIRST

    async def _missed_some(self, channel: Channel) -> bool:
        """After a read as long as the history (a burst, or an outage of the
        feed), whether entries after the relay's position were trimmed before
        it read them. If so its subscribers are told to reset, from the
        stream's newest entry on."""
        assert channel.last_id is not None
        stream = await self._snapshot(channel.key)
        # Read all along, the relay saw every life of the channel: no expiry rule.
        if resume_problem(channel.last_id, self.epoch, str(self.epoch), stream) is None:
            return False
        newest = max(stream.last, position(channel.last_id) or (0, 0))
        channel.last_id = entry_id(newest)
        log.warning(
            "channel %s: more messages came at once than its history keeps: its subscribers reset",
            channel.name,
        )
        text = control_text(
            "reset",
            channel=channel.name,
            epoch=self.epoch,
            position=channel.last_id,
            reason="more messages came at once than the history keeps",
        )
        self.tell_subscribers(channel, newest, core.text_frame(text))
        return True

    def deliver(self, channel: Channel, entries: Sequence[tuple[str, Mapping[str, str]]]) -> None:
        for entry, fields in entries:
            at = position(entry)
            # A channel given up and watched again during the read starts later.
            if at is None or channel.last_id is None or at <= position(channel.last_id):
                continue
            channel.last_id = entry
            text = message_text(channel.name, entry, fields)
            if text is None:
                log.warning("skipping entry %s of %s: not a published message", entry, channel.key)
                continue
            live = sum(sub.pending is None for sub in channel.subscribers.values())
            self.tell_subscribers(channel, at, core.text_frame(text))
            self.metrics.messages.inc()
            self.metrics.deliveries.inc(live)
            # From Redis taking the message in (its ID, Redis's clock) to queued for everyone.
            self.metrics.fanout.observe(max(0.0, time.time() - at[0] / 1000))

    def _feed_down(self, exc: BaseException) -> None:
        problem = f"cannot reach Redis at {self.config.redis_url}: {exc}"
        if self.feed_problem is None:
            log.error("push feed interrupted: %s", problem)
            self.tell_everyone(control_text("status", feed="interrupted"))
        elif self.feed_problem != problem:
            log.error("%s", problem)
        self.feed_problem = problem

    async def _reconnect(self) -> None:
        await self._adopt_epoch(await self._current_epoch())
        await self._read_revocations()
        was_down = self.feed_problem
        self.feed_problem = None
        log.info("push feed live (Redis at %s)", self.config.redis_url)
        if was_down:
            self.tell_everyone(control_text("status", feed="live"))

    async def _adopt_epoch(self, epoch: str) -> None:
        """Take Redis's epoch; a new one means Redis lost the history, and
        every subscriber is told to reset."""
        if self.epoch is not None and epoch != self.epoch:
            log.warning("Redis lost the push history (new epoch): every subscriber resets")
            self.epoch = epoch
            # Those subscribed before it, taken now: one that subscribes while
            # this reads Redis below already started from the new epoch.
            before = [(ch, list(ch.subscribers.values())) for ch in self.channels.values()]
            for channel, subs in before:
                channel.last_id = start_position(await self._snapshot(channel.key))
                text = control_text(
                    "reset",
                    channel=channel.name,
                    epoch=epoch,
                    position=channel.last_id,
                    reason="the history was lost (Redis started afresh)",
                )
                for sub in subs:
                    if channel.subscribers.get(sub.client) is sub:
                        self.send_text(sub.client, text)
        self.epoch = epoch

    async def _read_revocations(self) -> None:
        """The revocations since the last read (at start: all kept, a token's
        lifetime of them), before any subscription is taken."""
        if self.control_last is None:
            self.control_last = start_position(await self._snapshot(self.control))
            cursor = "-"
        else:
            cursor = f"({self.control_last}"
        while entries := await self.query.xrange(self.control, cursor, "+", count=READ_COUNT):
            self.take_revocations(entries)
            cursor = f"({entries[-1][0]}"

    def take_revocations(self, entries: Sequence[tuple[str, Mapping[str, str]]]) -> None:
        for entry, fields in entries:
            if position(entry) > position(self.control_last):
                self.control_last = entry
            revocation = self.revoked.add(fields)
            if revocation is None:
                log.warning("skipping entry %s of %s: not a revocation", entry, self.control)
                continue
            for sub in list(self.granted):
                assert sub.grant is not None
                if ended_by(revocation, sub.channel.name, sub.grant):
                    self.end(sub, "revoked", "the application revoked this access")

    async def expire(self) -> None:
        """Ends each subscription whose token expired (unless renewed in time)."""
        while True:
            await asyncio.sleep(EXPIRY_CHECK)
            now = time.time()
            for sub in list(self.granted):
                assert sub.grant is not None
                if sub.grant.expires <= now:
                    self.end(sub, "expired", "token expired")
            self.revoked.forget_before(int((now - shared.MAX_TOKEN_TTL - 60) * 1000))

    async def watch_redis(self) -> None:
        """The memory Redis uses and may use, and how many channels it holds,
        for the dashboard (its page and endpoint) through its metrics
        directory; skipped while Redis is out of reach."""
        assert self.config.metrics_dir is not None
        pattern = shared.stream_key(self.config.prefix, "*")
        while True:
            try:
                memory = await self.query.info("memory")
                channels, cursor = 0, 0
                while True:
                    cursor, keys = await self.query.scan(
                        cursor, match=pattern, count=1000, _type="stream"
                    )
                    channels += len(keys)
                    if not cursor:
                        break
            except self.errors:
                pass
            else:
                sidecar_metrics.write_redis_stats(
                    self.config.metrics_dir,
                    self.config.name,
                    int(memory["used_memory"]),
                    int(memory["maxmemory"]),
                    channels,
                    time.time(),
                )
            await asyncio.sleep(REDIS_STATS_INTERVAL)

    async def _current_epoch(self) -> str:
        key = shared.epoch_key(self.config.prefix)
        # Read first: a Redis that is full refuses every SET, even one that would not write.
        epoch = await self.query.get(key)
        if epoch is None:
            await self.query.set(key, secrets.token_urlsafe(12), nx=True)
            epoch = await self.query.get(key)
        return str(epoch)

    async def _snapshot(self, key: str) -> StreamState:
        """The channel's history and Redis's clock, read in one transaction."""
        async with self.query.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(key)
            pipe.time()
            info, now = await pipe.execute(raise_on_error=False)
        if isinstance(info, Exception):
            if "no such key" not in str(info).lower():
                raise info
            info = None
        if isinstance(now, Exception):
            raise now
        seconds, micros = now
        return stream_state(info, int(seconds) * 1000 + int(micros) // 1000)

    # --- subscriptions ---------------------------------------------------
    async def received(self, client: core.Client, text: str) -> None:
        """One request of a client (the core's hook): subscribe, renew or unsubscribe."""
        conn = self.clients.get(client)
        if conn is None:  # dropped meanwhile
            return
        request = parse_request(text)
        name = request.get("channel") if request else None
        if not isinstance(name, str):
            name = None
        if not conn.budget.take(time.monotonic()):
            self.send_text(
                client, control_text("refused", channel=name, reason="too many requests")
            )
            return
        if request is None:
            self.send_text(client, control_text("refused", channel=None, reason="bad request"))
            return
        if request["type"] == "unsubscribe":
            if name in conn.subs:
                self._unsubscribe(conn.subs.pop(name))
            return
        now = time.time()
        found = access(self.config, name, request.get("token"), now, self.revoked)
        if request["type"] == "renew":
            self.renew(client, conn, name, found, now)
            return
        problem = found if isinstance(found, str) else None
        if problem is None and name in conn.subs:
            problem = "already subscribed"
        if problem is None and len(conn.subs) >= self.config.max_channels:
            problem = f"at most {self.config.max_channels} channels per connection"
        if problem is None and self.feed_problem is not None:
            problem = "unavailable: the push feed is interrupted"
        if problem is not None:
            self.send_text(client, control_text("refused", channel=name, reason=problem))
            return
        assert name is not None
        grant = found if isinstance(found, shared.Grant) else None
        since, client_epoch = request.get("since"), request.get("epoch")
        await self.subscribe(client, conn, name, since, client_epoch, grant)

    def renew(
        self,
        client: core.Client,
        conn: Connection,
        name: str | None,
        found: shared.Grant | str | None,
        now: float,
    ) -> None:
        """A fresh token for a channel already subscribed to: it goes on, no gap."""
        sub = conn.subs.get(name) if name is not None else None
        if sub is None or isinstance(found, str):
            reason = "not subscribed" if sub is None else found
            self.send_text(client, control_text("refused", channel=name, reason=reason))
            return
        sub.grant = found
        if found is None:
            self.granted.pop(sub, None)
        else:
            self.granted[sub] = None
        self.send_text(client, control_text("renewed", channel=name, **expiry(found, now)))

    async def _watch(self, name: str) -> Channel:
        """The channel, watched by the relay from after its newest entry."""
        channel = self.channels.get(name)
        if channel is None:
            channel = Channel(name, shared.stream_key(self.config.prefix, name))
            channel.starting = asyncio.ensure_future(self._start(channel.key))
            self.channels[name] = channel
        if channel.last_id is None:
            assert channel.starting is not None
            try:
                start = await asyncio.shield(channel.starting)
            except self.errors:
                if not channel.subscribers and self.channels.get(name) is channel:
                    del self.channels[name]
                raise
            if channel.last_id is None:
                channel.last_id = start
                self._wake.set()
        return channel

    async def _start(self, key: str) -> str:
        return start_position(await self._snapshot(key))

    async def subscribe(
        self,
        client: core.Client,
        conn: Connection,
        name: str,
        since: Any,
        client_epoch: Any,
        grant: shared.Grant | None = None,
    ) -> None:
        try:
            channel = await self._watch(name)
            # Redis may have lost its data while this sidecar's feed stayed up
            # (another sidecar of the fleet, or a client, saw it first): the
            # epoch a subscription starts from is Redis's own, never a stale one.
            await self._adopt_epoch(await self._current_epoch())
        except self.errors:
            self.send_text(client, control_text("refused", channel=name, reason="unavailable"))
            return
        if self.clients.get(client) is not conn or name in conn.subs:  # left, or raced itself
            return
        if grant is not None and self.revoked.revokes(name, grant):  # revoked meanwhile
            self.send_text(client, control_text("refused", channel=name, reason="token revoked"))
            return
        sub = Subscription(client, channel, grant=grant)
        channel.subscribers[client] = sub
        conn.subs[name] = sub
        if grant is not None:
            self.granted[sub] = None
        # Everything after `upto` reaches the subscription live (held in pending meanwhile).
        upto = channel.last_id
        assert upto is not None
        try:
            if since is None:
                self.send(client, self._subscribed(sub, upto, 0))
                caught_up = position(upto)
            else:
                caught_up = await self._resume(sub, since, client_epoch, upto)
        except self.errors:
            conn.subs.pop(name, None)
            self._unsubscribe(sub)
            self.send_text(client, control_text("refused", channel=name, reason="unavailable"))
            return
        pending, sub.pending = sub.pending or [], None
        # Live messages the client already has (it came from a host ahead of this one) are left out.
        frames = [frame for at, frame in pending if caught_up is None or at > caught_up]
        if caught_up is not None and caught_up > position(upto):
            sub.floor = caught_up
        if frames and client in self.clients:
            self.send(client, b"".join(frames))

    def _subscribed(self, sub: Subscription, upto: str, replayed: int) -> bytes:
        text = control_text(
            "subscribed",
            channel=sub.channel.name,
            epoch=self.epoch,
            position=upto,
            replayed=replayed,
            **expiry(sub.grant, time.time()),
        )
        return core.text_frame(text)

    async def _resume(
        self, sub: Subscription, since: Any, client_epoch: Any, upto: str
    ) -> Position | None:
        """Replay what followed `since` up to `upto`, in pages sent as the
        client reads them, then say "subscribed"; or tell it to reset. Returns
        the position the client then holds (None: it left)."""
        channel, client = sub.channel, sub.client
        stream = await self._snapshot(channel.key)
        problem = resume_problem(since, client_epoch, str(self.epoch), stream, self.ttl_ms)
        replayed, cursor = 0, since
        upto_pos = position(upto)
        assert upto_pos is not None
        while problem is None and (position(cursor) or upto_pos) < upto_pos:
            page = await self.query.xrange(channel.key, f"({cursor}", upto, count=REPLAY_PAGE)
            if not page:
                break
            for entry, fields in page:
                cursor = entry
                text = message_text(channel.name, entry, fields)
                if text is None:
                    continue
                if replayed == self.config.max_replay:
                    problem = f"more than {self.config.max_replay} messages to replay"
                    break
                if not await self.send_paced(client, core.text_frame(text)):
                    return None
                replayed += 1
        if problem is not None:
            text = control_text(
                "reset", channel=channel.name, epoch=self.epoch, position=upto, reason=problem
            )
            self.send_text(client, text)
            return upto_pos
        held = max(upto_pos, position(since) or upto_pos)
        self.send(client, self._subscribed(sub, entry_id(held), replayed))
        return held

    # --- HTTP --------------------------------------------------------------
    async def handle_index(self, _request: web.Request) -> web.Response:
        # Unready while Redis is out of reach: the role's readiness check then
        # fails naming this sidecar (a wrong password, say) instead of passing.
        if self.feed_problem is not None:
            raise web.HTTPServiceUnavailable(text=f"push feed interrupted: {self.feed_problem}\n")
        return web.Response(
            text=PAGE.read_text(encoding="utf-8"),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def handle_script(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=SCRIPT.read_text(encoding="utf-8"),
            content_type="text/javascript",
            headers={"Cache-Control": "no-cache"},
        )

    async def _start_relay(self, _app: web.Application) -> None:
        self.relay_task = asyncio.create_task(self.relay())
        self.expiry_task = asyncio.create_task(self.expire())
        if self.config.metrics_dir is not None:  # a dashboard reads it
            self.stats_task = asyncio.create_task(self.watch_redis())

    async def _stop_relay(self, _app: web.Application) -> None:
        await core.stop_tasks((self.relay_task, self.expiry_task, self.stats_task))
        self.cap.close()


def redis_clients(config: PushConfig) -> tuple[Any, Any, tuple[type, ...]]:
    """The relay's connection (its reads block), the pool for everything else,
    and the exceptions that mean Redis is out of reach. Both are bounded: a
    burst of thousands of subscribes waits for a free connection instead of
    opening one each, which would take the descriptors the clients need
    (clients.FD_RESERVE)."""
    import redis
    import redis.asyncio

    options: dict[str, Any] = {
        "username": config.redis_username,
        "password": config.redis_password,
        "decode_responses": True,
        "socket_connect_timeout": 5,
    }
    if config.redis_ca_file:
        options["ssl_ca_certs"] = config.redis_ca_file
    pool = redis.asyncio.BlockingConnectionPool
    feed = pool.from_url(
        config.redis_url, max_connections=1, socket_timeout=BLOCK_MS / 1000 + 5, **options
    )
    query = pool.from_url(
        config.redis_url,
        max_connections=REDIS_POOL,
        timeout=REDIS_POOL_WAIT,
        socket_timeout=5,
        **options,
    )
    return (
        redis.asyncio.Redis(connection_pool=feed),
        redis.asyncio.Redis(connection_pool=query),
        (redis.RedisError, OSError, asyncio.TimeoutError),
    )


async def serve(
    config: PushConfig,
    stop: asyncio.Event | None = None,
    metrics: sidecar_metrics.Metrics | None = None,
) -> None:
    """Serve until `stop` is set; raises if the site cannot start, the relay
    ends, or a unix socket listener loses its socket file."""
    push = PushSidecar(config, *redis_clients(config), metrics=metrics)

    def essentials() -> dict[asyncio.Future[Any], str]:
        # Created by the app's on_startup hook.
        assert push.relay_task and push.expiry_task
        tasks = {
            push.relay_task: "push relay task ended",
            push.expiry_task: "push token expiry task ended",
        }
        if push.stats_task is not None:
            tasks[push.stats_task] = "push Redis statistics task ended"
        return tasks

    await core.serve_app(push.app, config, essentials, "the push channel", stop)


def load_config(path: str) -> PushConfig:
    return core.load_config(path, parse_config)


def run_service(
    config_path: str,
    *,
    exit_hook: Callable[[int], NoReturn] = os._exit,
    restart_delay: float = core.RESTART_DELAY,
) -> NoReturn:
    """Entry point for the mod_wsgi service script; serves for the life of the process."""
    config = load_config(config_path)
    core.setup_logging(config.name)
    metrics = sidecar_metrics.open_metrics(config.name, config.metrics_dir, push=True)
    core.run_until_exit(lambda: serve(config, metrics=metrics), exit_hook, restart_delay)
