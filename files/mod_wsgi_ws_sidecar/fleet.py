"""One dashboard for a fleet of Apache hosts, through the push channel's Redis.

Each host's metrics sidecar (dashboard.py) appends its own row (busy, idle,
requests/s, open WebSockets against the cap) to one Redis stream every tick
and reads every host's rows back, so the dashboard on any host shows the
whole fleet. Ages are on Redis's clock (the stream IDs' milliseconds), so
hosts whose clocks disagree still agree on who went silent.

The rows and their ages are pure (FleetView); FleetLink is the I/O: one
XADD and one non-blocking XREAD a tick, on one connection. The redis package
is imported only when a link is made, so the dashboard runs without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import core

log = logging.getLogger("sidecar")

# Under the push channel's Redis user's keys (mod_wsgi_ws_sidecar:*), apart
# from every push sidecar's (mod_wsgi_ws_sidecar:NAME:channel:* and :epoch).
FLEET_KEY = "mod_wsgi_ws_sidecar:fleet:hosts"
# About a minute of rows for a fleet of 16 hosts a second: enough to find
# every live host's latest row when a sidecar starts.
STREAM_LENGTH = 1000
_ROW_KEYS = ("busy", "idle", "slots", "rps", "websockets", "cap")


@dataclass(frozen=True)
class FleetConfig:
    host: str
    redis_url: str
    silent_after: float = 5.0
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_ca_file: str | None = None


_FLEET_KEYS = {"host", "redis", "silent_after"}


def parse_fleet(data: Any) -> FleetConfig:
    """The `fleet` object of a metrics sidecar's JSON file; ValueError names the bad key."""
    if not isinstance(data, dict):
        raise ValueError("'fleet' must be an object")
    unknown = sorted(set(data) - _FLEET_KEYS)
    if unknown:
        raise ValueError(f"unknown key 'fleet.{unknown[0]}'")
    host = data.get("host")
    if not isinstance(host, str) or not host.isprintable() or not host.strip():
        raise ValueError("'fleet.host' must name this host")
    server = data.get("redis")
    if not isinstance(server, dict) or not str(server.get("url", "")).startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ValueError(
            "'fleet.redis' must be an object with a redis://, rediss:// or unix:// url"
        )
    silent_after = data.get("silent_after", FleetConfig.silent_after)
    if isinstance(silent_after, bool) or not isinstance(silent_after, int | float):
        raise ValueError("'fleet.silent_after' must be a number of seconds")
    if not 0 < silent_after < math.inf:
        raise ValueError("'fleet.silent_after' must be a positive number of seconds")
    return FleetConfig(
        host=host,
        redis_url=server["url"],
        silent_after=float(silent_after),
        redis_username=core.optional_text(server, "username", "fleet.redis."),
        redis_password=core.optional_text(server, "password", "fleet.redis."),
        redis_ca_file=core.optional_text(server, "ca_file", "fleet.redis."),
    )


def entry_ms(entry_id: str) -> int:
    """The milliseconds of a stream entry's ID: when Redis took it in."""
    return int(entry_id.split("-", 1)[0])


class FleetView:
    """Every host's latest row, this host's from its own last tick."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.own: dict[str, Any] | None = None
        self.rows: dict[str, dict[str, Any]] = {}  # host -> its row, as read from Redis
        self.heard_ms: dict[str, int] = {}  # host -> when Redis took its latest row
        # Redis's clock: the ms of this host's last row Redis took, and our time then.
        self.redis_ms: int | None = None
        self._redis_ms_at = 0.0
        self.problem: str | None = None

    def tick(
        self,
        summary: Mapping[str, Any],
        trends: Mapping[str, Any],
        now: float,
    ) -> dict[str, Any]:
        """Record this host's row from one scoreboard reading (its summary,
        and its figures from trends.Trends.tick); the fleet as the
        dashboard shows it."""
        sidecars = trends["sidecars"]
        self.own = {
            "busy": summary.get("busy", 0),
            "idle": summary.get("idle", 0),
            "slots": summary.get("slots", 0),
            "rps": trends["rates"]["rps"],
            "websockets": sum(s["websockets"] for s in sidecars),
            "cap": sum(s["max_clients"] for s in sidecars),
        }
        return self.view(now)

    def heard(self, entries: Sequence[tuple[str, Mapping[str, str]]]) -> None:
        """Rows read from the stream, oldest first; a malformed one is skipped."""
        for entry_id, fields in entries:
            host = fields.get("host")
            try:
                row = json.loads(fields.get("row", ""))
                ms = entry_ms(entry_id)
            except ValueError:
                continue
            if not isinstance(host, str) or not isinstance(row, dict):
                continue
            # Every dashboard renders these: a value not a number is shown as unknown.
            self.rows[host] = {key: _number_or_none(row.get(key)) for key in _ROW_KEYS}
            self.heard_ms[host] = ms

    def sent(self, entry_id: str, now: float) -> None:
        """This host's row is in: Redis's clock read from its ID."""
        self.redis_ms, self._redis_ms_at = entry_ms(entry_id), now
        self.problem = None

    def view(self, now: float) -> dict[str, Any]:
        """The fleet for the dashboard: every host, this one first, each with
        how long ago Redis last heard from it and whether it went silent."""
        hosts = []
        if self.own is not None:
            hosts.append({"host": self.config.host, **self.own, "age": 0.0, "silent": False})
        redis_now = None
        if self.redis_ms is not None:
            redis_now = self.redis_ms + (now - self._redis_ms_at) * 1000
        for host in sorted(self.rows):
            if host == self.config.host:
                continue
            age = None if redis_now is None else max(0.0, (redis_now - self.heard_ms[host]) / 1000)
            silent = age is None or age > self.config.silent_after
            hosts.append({"host": host, **self.rows[host], "age": _rounded(age), "silent": silent})
        return {"hosts": hosts, "silent_after": self.config.silent_after, "error": self.problem}


def _number_or_none(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def _rounded(age: float | None) -> float | None:
    return None if age is None else round(age, 1)


class FleetLink:
    """Sends this host's row to Redis every tick and reads everyone's back."""

    def __init__(
        self,
        view: FleetView,
        redis: Any,
        errors: tuple[type[BaseException], ...],
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.view, self.redis, self.errors = view, redis, errors
        self.interval, self._clock = interval, clock
        self.last_id: str | None = None  # the newest entry read

    async def exchange(self) -> None:
        """One tick's round: this host's row in, the rows since the last read out."""
        if self.last_id is None:
            # Starting: the latest rows there are, to find every live host at once.
            newest = await self.redis.xrevrange(FLEET_KEY, "+", "-", count=STREAM_LENGTH)
            self.view.heard(list(reversed(newest)))
            self.last_id = newest[0][0] if newest else "0-0"
        if self.view.own is not None:
            row = json.dumps(self.view.own, separators=(",", ":"))
            entry_id = await self.redis.xadd(
                FLEET_KEY,
                {"host": self.view.config.host, "row": row},
                maxlen=STREAM_LENGTH,
                approximate=True,
            )
            self.view.sent(str(entry_id), self._clock())
        answer = await self.redis.xread({FLEET_KEY: self.last_id}, count=STREAM_LENGTH)
        for _key, entries in answer or ():
            self.view.heard(entries)
            if entries:
                self.last_id = entries[-1][0]

    async def run(self) -> None:
        """Every interval for the life of the sidecar; Redis out of reach is
        shown on the dashboard (and logged once), and tried again next tick."""
        while True:
            try:
                await asyncio.wait_for(self.exchange(), self.interval * 5)
            except (TimeoutError, *self.errors) as exc:
                problem = f"cannot reach the fleet's Redis at {self.view.config.redis_url}: {exc!r}"
                if self.view.problem is None:
                    log.error("%s", problem)
                self.view.problem = problem
            await asyncio.sleep(self.interval)


def redis_client(config: FleetConfig) -> tuple[Any, tuple[type[BaseException], ...]]:
    """The link's Redis connection, and the exceptions that mean Redis is out of reach."""
    import redis
    import redis.asyncio

    options: dict[str, Any] = {
        "username": config.redis_username,
        "password": config.redis_password,
        "decode_responses": True,
        "socket_connect_timeout": 5,
        "socket_timeout": 5,
    }
    if config.redis_ca_file:
        options["ssl_ca_certs"] = config.redis_ca_file
    client = redis.asyncio.Redis.from_url(config.redis_url, **options)
    return client, (redis.RedisError, OSError)
