"""The push sidecar's Redis in memory, and helpers to drive the sidecar over
real WebSockets.

`Streams` stands in for the few commands the sidecar uses (XREAD, XRANGE,
XINFO STREAM and TIME in one transaction, SET NX, GET), with Redis's ID
rules, trimming and XINFO's counters, so that the subscription logic can be
driven into its races deterministically. The real Redis is the scenarios'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from mod_wsgi_ws_sidecar import push as shared
from mod_wsgi_ws_sidecar import push_sidecar

SECRET = "t" * 40
NAME = "push"
PREFIX = shared.key_prefix(NAME)


def run(coro: Awaitable[Any], timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def config(**overrides: Any) -> push_sidecar.PushConfig:
    values: dict[str, Any] = {
        "name": NAME,
        "redis_url": "redis://127.0.0.1:6379/0",
        "token_secret": SECRET,
        "public_channels": ("news", "demo.*"),
        "send_timeout": 1.0,
    }
    return push_sidecar.PushConfig(**{**values, **overrides})


class Down(Exception):
    """Redis out of reach."""


class Streams:
    """Redis's stream commands as the sidecar uses them, in memory."""

    def __init__(self) -> None:
        self.streams: dict[str, list[tuple[str, dict[str, str]]]] = {}
        # Per stream: last-generated-id and entries-added, as XINFO STREAM tells them.
        self.generated: dict[str, tuple[str, int]] = {}
        self.values: dict[str, str] = {}
        self.down = False
        self.range_delay = 0.0
        self.snapshot_delay = 0.0
        self.changed = asyncio.Condition()
        self._last = (0, 0)

    def _check(self) -> None:
        if self.down:
            raise Down("Connection refused")

    async def publish(self, channel: str, data: Any, maxlen: int = 1000) -> str:
        self.values.setdefault(shared.epoch_key(PREFIX), "E1")
        key = shared.stream_key(PREFIX, channel)
        return await self.add(key, {"d": shared.encode_message(data)}, maxlen)

    async def revoke(self, subject: str | None = None, channel: str | None = None) -> str:
        """What push.revoke adds."""
        fields = shared.revocation_fields(subject, channel, int(time.time() * 1000))
        return await self.add(shared.control_key(PREFIX), fields)

    async def add(self, key: str, fields: dict[str, str], maxlen: int = 1000) -> str:
        """XADD key MAXLEN = maxlen * fields."""
        self._check()
        ms = max(int(time.time() * 1000), self._last[0])
        seq = self._last[1] + 1 if ms == self._last[0] else 0
        self._last = (ms, seq)
        entry_id = f"{ms}-{seq}"
        entries = self.streams.setdefault(key, [])
        entries.append((entry_id, fields))
        del entries[:-maxlen]
        self.generated[key] = (entry_id, self.generated.get(key, ("", 0))[1] + 1)
        async with self.changed:
            self.changed.notify_all()
        return entry_id

    def lose_everything(self) -> None:
        self.streams.clear()
        self.generated.clear()
        self.values.clear()

    async def xread(self, streams: dict[str, str], count: int, block: int) -> list:
        self._check()

        def found() -> list:
            reply = []
            for key, since in streams.items():
                after = push_sidecar.position(since)
                new = [e for e in self.streams.get(key, []) if push_sidecar.position(e[0]) > after]
                if new:
                    reply.append([key, new[:count]])
            return reply

        async with self.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait_for(found), block / 1000)
        self._check()
        return found()

    async def xrange(self, key: str, low: str, high: str, count: int | None = None) -> list:
        await asyncio.sleep(self.range_delay)
        self._check()
        exclusive = low.startswith("(")
        low_pos = (0, 0) if low == "-" else push_sidecar.position(low.lstrip("("))
        high_pos = (2**64, 0) if high == "+" else push_sidecar.position(high)
        found = [
            e
            for e in self.streams.get(key, [])
            if (push_sidecar.position(e[0]) > low_pos if exclusive else True)
            and push_sidecar.position(e[0]) <= high_pos
        ]
        return found[:count]

    def xinfo_stream(self, key: str) -> dict | Down:
        if key not in self.streams:
            return Down("no such key")
        entries = self.streams[key]
        last, added = self.generated[key]
        # Trimming leaves max-deleted-entry-id alone, as in Redis 7.
        return {
            "length": len(entries),
            "first-entry": entries[0] if entries else None,
            "last-generated-id": last,
            "entries-added": added,
            "max-deleted-entry-id": "0-0",
        }

    async def info(self, section: str) -> dict[str, int]:
        self._check()
        assert section == "memory"
        return {"used_memory": 1000 + sum(len(e) for e in self.streams.values()), "maxmemory": 0}

    async def scan(self, cursor: int, match: str, count: int, _type: str) -> tuple[int, list[str]]:
        """All at once: the sidecar must follow the cursor all the same."""
        self._check()
        assert match.endswith("*") and _type == "stream"
        return 0, [key for key in self.streams if key.startswith(match[:-1])]

    def time(self) -> tuple[int, int]:
        now = time.time()
        return int(now), int(now % 1 * 1_000_000)

    def pipeline(self, transaction: bool) -> Transaction:
        assert transaction
        return Transaction(self)

    async def set(self, key: str, value: str, nx: bool = False) -> bool:
        self._check()
        if nx and key in self.values:
            return False
        self.values[key] = value
        return True

    async def get(self, key: str) -> str | None:
        self._check()
        return self.values.get(key)


class Transaction:
    """MULTI ... EXEC of XINFO STREAM and TIME: queued, then answered at once,
    an error in the list where Redis would put one."""

    def __init__(self, redis: Streams) -> None:
        self.redis, self.queued = redis, []

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    def xinfo_stream(self, key: str) -> Transaction:
        self.queued.append(lambda: self.redis.xinfo_stream(key))
        return self

    def time(self) -> Transaction:
        self.queued.append(self.redis.time)
        return self

    async def execute(self, raise_on_error: bool) -> list:
        assert not raise_on_error
        await asyncio.sleep(self.redis.snapshot_delay)
        self.redis._check()
        return [command() for command in self.queued]


@contextlib.asynccontextmanager
async def serving(
    redis: Streams, feed: Any = None, **overrides: Any
) -> AsyncIterator[tuple[push_sidecar.PushSidecar, TestClient]]:
    """The push sidecar's app on a loopback port; its relay starts with it
    and reads `feed` (by default, `redis`)."""
    push = push_sidecar.PushSidecar(config(**overrides), feed or redis, redis, (Down,))
    async with TestClient(TestServer(push.app)) as client:
        await wait_for(lambda: push.feed_problem is None)
        yield push, client
    assert push.relay_task is not None and push.relay_task.done()


async def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def subscribe(ws: aiohttp.ClientWebSocketResponse, channel: str, **fields: Any) -> dict:
    await ws.send_json({"type": "subscribe", "channel": channel, **fields})
    return await receive(ws)


async def messages(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    got = [await receive(ws) for _ in range(count)]
    assert all(m["type"] == "message" for m in got), got
    return got
