"""The push channel's rules and its sidecar: channel names, tokens, positions,
resume and reset, and subscriptions over real WebSockets.

The sidecar's Redis here is `Streams`, an in-memory stand-in for the few
stream commands it uses (XREAD, XRANGE, XREVRANGE, XINFO STREAM, SET NX, GET),
with Redis's ID rules and trimming, so that the subscription logic can be
driven into its races deterministically. The real Redis is the fleet
scenario's (molecule/fleet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import mod_wsgi_ws_sidecar_push as shared
import push_sidecar
import pytest
import sidecar
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

SECRET = "t" * 40
NAME = "push"
PREFIX = shared.key_prefix(NAME)


def run(coro: Awaitable[Any], timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# --- names and tokens ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "valid"),
    [
        ("orders.42", True),
        ("user:7@site", True),
        ("a" * 100, True),
        ("a" * 101, False),
        ("", False),
        (".hidden", False),
        ("with space", False),
        ("star*", False),
        (42, False),
    ],
)
def test_channel_names(channel: Any, valid: bool) -> None:
    assert shared.valid_channel(channel) is valid


def test_a_token_opens_its_channel_until_it_expires() -> None:
    token = shared.sign_token(SECRET, "orders.42", ttl=60, now=1000)
    assert token.startswith("1060.")
    assert shared.token_problem(SECRET, "orders.42", token, now=1059) is None
    assert shared.token_problem(SECRET, "orders.42", token, now=1060) == "token expired"


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (None, "no valid token"),
        ("", "no valid token"),
        ("garbage", "no valid token"),
        ("1060.abc.def", "no valid token"),
        ("-5.abc", "no valid token"),
        ("9999999999999.abc", "no valid token"),
        ("1060.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "token not valid for this channel"),
    ],
)
def test_malformed_and_forged_tokens_are_refused(token: Any, problem: str) -> None:
    assert shared.token_problem(SECRET, "orders.42", token, now=1000) == problem


def test_a_token_for_another_channel_or_key_is_refused() -> None:
    other_channel = shared.sign_token(SECRET, "orders.43", ttl=60, now=1000)
    other_key = shared.sign_token("k" * 40, "orders.42", ttl=60, now=1000)
    for token in (other_channel, other_key):
        assert shared.token_problem(SECRET, "orders.42", token, 1000) == (
            "token not valid for this channel"
        )


def test_the_expiry_cannot_be_moved() -> None:
    token = shared.sign_token(SECRET, "orders.42", ttl=60, now=1000)
    moved = "9060." + token.split(".")[1]
    assert shared.token_problem(SECRET, "orders.42", moved, 2000) == (
        "token not valid for this channel"
    )


def test_messages_must_be_json_and_bounded() -> None:
    assert shared.encode_message({"a": "é"}) == '{"a":"é"}'
    with pytest.raises(ValueError, match="JSON-serialisable"):
        shared.encode_message({"a": object()})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        shared.encode_message(float("nan"))
    with pytest.raises(ValueError, match="at most"):
        shared.encode_message("x" * shared.MAX_MESSAGE_BYTES)


# --- positions and resume (pure) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1700000000000-0", (1700000000000, 0)),
        ("0-0", (0, 0)),
        ("12-3", (12, 3)),
        ("12", None),
        ("12-3-4", None),
        ("a-1", None),
        ("-1", None),
        (None, None),
        (12, None),
    ],
)
def test_positions(text: Any, parsed: Any) -> None:
    assert push_sidecar.position(text) == parsed


def test_positions_compare_in_stream_order() -> None:
    assert push_sidecar.position("9-5") < push_sidecar.position("10-0")
    assert push_sidecar.position("10-2") < push_sidecar.position("10-10")


def state(first: str | None = "5-0") -> push_sidecar.StreamState:
    return push_sidecar.stream_state({"first-entry": (first, {}) if first else None})


@pytest.mark.parametrize(
    ("since", "client_epoch", "stream", "problem"),
    [
        ("7-0", "E", state(), None),
        ("7-0", "E", state(first="7-0"), None),  # its own message is the oldest left
        ("7-0", "E", state(first="7-1"), "the history no longer reaches back that far"),
        ("7-0", "E", state(first="9-0"), "the history no longer reaches back that far"),
        ("7-0", "OLD", state(), "the history was lost (Redis started afresh)"),
        ("7-0", None, state(), "the history was lost (Redis started afresh)"),
        ("seven", "E", state(), "not a position"),
        ("7-0", "E", push_sidecar.StreamState(exists=False), "the history of this channel is gone"),
        ("7-0", "E", state(first=None), "the history of this channel is gone"),
        ("0-0", "E", push_sidecar.StreamState(exists=False), None),
        ("0-0", "E", state(first="9-0"), None),  # whatever the history holds
    ],
)
def test_resume_or_reset(
    since: str, client_epoch: Any, stream: push_sidecar.StreamState, problem: str | None
) -> None:
    assert push_sidecar.resume_problem(since, client_epoch, "E", stream) == problem


def config(**overrides: Any) -> push_sidecar.PushConfig:
    values: dict[str, Any] = {
        "name": NAME,
        "redis_url": "redis://127.0.0.1:6379/0",
        "token_secret": SECRET,
        "public_channels": ("news", "demo.*"),
        "send_timeout": 1.0,
    }
    return push_sidecar.PushConfig(**{**values, **overrides})


@pytest.mark.parametrize(
    ("channel", "token", "problem"),
    [
        ("news", None, None),
        ("demo.anything", None, None),
        ("demo", None, "no valid token"),  # "demo.*" does not match "demo"
        ("orders.42", None, "no valid token"),
        ("orders.42", shared.sign_token(SECRET, "orders.42", 60), None),
        ("orders.42", shared.sign_token(SECRET, "orders.42", -1), "token expired"),
        (
            "orders.42",
            shared.sign_token(SECRET, "orders.4", 60),
            "token not valid for this channel",
        ),
        ("bad name", None, "not a channel name"),
        (None, None, "not a channel name"),
    ],
)
def test_who_may_subscribe(channel: Any, token: Any, problem: str | None) -> None:
    assert push_sidecar.access_problem(config(), channel, token, time.time()) == problem


def test_message_frames_carry_channel_position_and_data() -> None:
    text = push_sidecar.message_text("a.b", "5-1", {"d": '{"x":[1,"<"]}'})
    assert json.loads(text) == {
        "type": "message",
        "channel": "a.b",
        "id": "5-1",
        "data": {"x": [1, "<"]},
    }
    assert push_sidecar.message_text("a", "5-1", {"d": "{not json"}) is None
    assert push_sidecar.message_text("a", "5-1", {"other": "1"}) is None


ROLE_WRITTEN = {
    "name": NAME,
    "kind": "push",
    "listen": {"host": "127.0.0.1", "port": 8766},
    "max_clients": 500,
    "origins": [],
    "heartbeat": 30.0,
    "send_timeout": 1.0,
    "max_send_buffer": 262144,
    "public_channels": ["demo"],
    "history": 1000,
    "redis": {"url": "redis://127.0.0.1:6379/0", "username": "u", "password": "p" * 20},
    "token_secret": SECRET,
    "secret": "s" * 43,
}


def test_config_as_the_role_writes_it() -> None:
    parsed = push_sidecar.parse_config(ROLE_WRITTEN)
    assert (parsed.port, parsed.max_clients, parsed.public_channels) == (8766, 500, ("demo",))
    assert (parsed.redis_username, parsed.redis_password) == ("u", "p" * 20)
    assert SECRET not in repr(parsed) and "p" * 20 not in repr(parsed)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_secret": "short"}, "token_secret"),
        ({"redis": {"url": "http://x"}}, "redis.url"),
        ({"redis": "redis://x"}, "'redis'"),
        ({"public_channels": "demo"}, "public_channels"),
        ({"max_clients": 0}, "max_clients"),
        ({"surprise": 1}, "surprise"),
        ({"listen": {"host": "127.0.0.1"}}, "listen.port"),
    ],
)
def test_bad_config_is_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(sidecar.ConfigError, match=message):
        push_sidecar.parse_config({**ROLE_WRITTEN, **change})


# --- the sidecar against an in-memory Redis ------------------------------------------------


class Down(Exception):
    """Redis out of reach."""


class Streams:
    """Redis's stream commands as the sidecar uses them, in memory."""

    def __init__(self) -> None:
        self.streams: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self.values: dict[str, str] = {}
        self.down = False
        self.range_delay = 0.0
        self.changed = asyncio.Condition()
        self._last = (0, 0)

    def _check(self) -> None:
        if self.down:
            raise Down("Connection refused")

    async def publish(self, channel: str, data: Any, maxlen: int = 1000) -> str:
        self._check()
        self.values.setdefault(shared.epoch_key(PREFIX), "E1")
        ms = max(int(time.time() * 1000), self._last[0])
        seq = self._last[1] + 1 if ms == self._last[0] else 0
        self._last = (ms, seq)
        entry_id = f"{ms}-{seq}"
        key = shared.stream_key(PREFIX, channel)
        entries = self.streams.setdefault(key, [])
        entries.append((entry_id, {"d": shared.encode_message(data)}))
        del entries[:-maxlen]
        async with self.changed:
            self.changed.notify_all()
        return entry_id

    def lose_everything(self) -> None:
        self.streams.clear()
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

    async def xrange(self, key: str, low: str, high: str) -> list:
        await asyncio.sleep(self.range_delay)
        self._check()
        exclusive = low.startswith("(")
        low_pos = push_sidecar.position(low.lstrip("("))
        high_pos = push_sidecar.position(high)
        return [
            e
            for e in self.streams.get(key, [])
            if (push_sidecar.position(e[0]) > low_pos if exclusive else True)
            and push_sidecar.position(e[0]) <= high_pos
        ]

    async def xrevrange(self, key: str, high: str, low: str, count: int) -> list:
        self._check()
        return list(reversed(self.streams.get(key, [])))[:count]

    async def xinfo_stream(self, key: str) -> dict:
        self._check()
        if key not in self.streams:
            raise Down("no such key")
        entries = self.streams[key]
        # Trimming leaves max-deleted-entry-id alone, as in Redis 7.
        return {"max-deleted-entry-id": "0-0", "first-entry": entries[0] if entries else None}

    async def set(self, key: str, value: str, nx: bool = False) -> bool:
        self._check()
        if nx and key in self.values:
            return False
        self.values[key] = value
        return True

    async def get(self, key: str) -> str | None:
        self._check()
        return self.values.get(key)


@contextlib.asynccontextmanager
async def serving(
    redis: Streams, **overrides: Any
) -> AsyncIterator[tuple[push_sidecar.PushSidecar, TestClient]]:
    """The push sidecar's app on a loopback port; its relay starts with it."""
    push = push_sidecar.PushSidecar(config(**overrides), redis, redis, (Down,))
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


def test_a_subscriber_gets_what_is_published_after_it_subscribed() -> None:
    async def scenario() -> None:
        redis = Streams()
        before = await redis.publish("news", {"n": 0})
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            answer = await subscribe(ws, "news")
            assert answer == {
                "type": "subscribed",
                "channel": "news",
                "epoch": "E1",
                "position": before,
                "replayed": 0,
            }
            ids = [await redis.publish("news", {"n": n}) for n in (1, 2)]
            got = await messages(ws, 2)
            assert [m["id"] for m in got] == ids
            assert [m["data"] for m in got] == [{"n": 1}, {"n": 2}]

    run(scenario())


def test_a_client_that_comes_back_gets_exactly_what_it_missed_then_live() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (_push, client):
            async with client.ws_connect("/ws") as ws:
                first = await subscribe(ws, "news")
                await redis.publish("news", {"n": 1})
                (seen,) = await messages(ws, 1)
            missed = [await redis.publish("news", {"n": n}) for n in (2, 3, 4)]
            async with client.ws_connect("/ws") as ws:
                answer = await subscribe(ws, "news", since=seen["id"], epoch=first["epoch"])
                assert (answer["type"], answer["replayed"], answer["position"]) == (
                    "subscribed",
                    3,
                    missed[-1],
                )
                replayed = await messages(ws, 3)
                assert [m["id"] for m in replayed] == missed
                live = await redis.publish("news", {"n": 5})
                assert [m["id"] for m in await messages(ws, 1)] == [live]

    run(scenario())


def test_messages_published_during_the_catch_up_come_once_and_in_order() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client):
            since = await redis.publish("news", {"n": 0})
            for n in range(1, 6):
                await redis.publish("news", {"n": n})
            # The replay takes a while; meanwhile the relay delivers newer entries.
            redis.range_delay = 0.3
            async with client.ws_connect("/ws") as watcher:
                await subscribe(watcher, "news")  # makes the relay watch the channel
                async with client.ws_connect("/ws") as ws:
                    await ws.send_json(
                        {
                            "type": "subscribe",
                            "channel": "news",
                            "since": since,
                            "epoch": push.epoch,
                        }
                    )
                    # Its subscription is in place, its replay under way.
                    await wait_for(lambda: len(push.channels["news"].subscribers) == 2)
                    for n in range(6, 11):
                        await redis.publish("news", {"n": n})
                    answer = await receive(ws)
                    assert answer["type"] == "subscribed" and answer["replayed"] == 5
                    got = await messages(ws, 10)
                    assert [m["data"]["n"] for m in got] == list(range(1, 11))
                    with pytest.raises(TimeoutError):
                        await ws.receive(timeout=0.3)

    run(scenario())


def test_a_client_whose_history_was_trimmed_is_told_to_reset() -> None:
    async def scenario() -> None:
        redis = Streams()
        old = await redis.publish("news", {"n": 0}, maxlen=3)
        for n in range(1, 5):
            newest = await redis.publish("news", {"n": n}, maxlen=3)
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            answer = await subscribe(ws, "news", since=old, epoch="E1")
            assert answer == {
                "type": "reset",
                "channel": "news",
                "epoch": "E1",
                "position": newest,
                "reason": "the history no longer reaches back that far",
            }
            live = await redis.publish("news", {"n": 5}, maxlen=3)
            assert [m["id"] for m in await messages(ws, 1)] == [live]

    run(scenario())


def test_when_redis_loses_its_data_every_subscriber_resets() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client), client.ws_connect("/ws") as ws:
            await redis.publish("news", {"n": 1})
            await subscribe(ws, "news")
            redis.down = True
            assert await receive(ws, timeout=3) == {"type": "status", "feed": "interrupted"}
            redis.lose_everything()
            redis.values[shared.epoch_key(PREFIX)] = "E2"
            redis.down = False
            reset = await receive(ws, timeout=5)
            assert (reset["type"], reset["epoch"], reset["position"]) == ("reset", "E2", "0-0")
            assert await receive(ws) == {"type": "status", "feed": "live"}
            assert push.epoch == "E2"
            live = await redis.publish("news", {"n": 2})
            assert [m["id"] for m in await messages(ws, 1)] == [live]

    run(scenario())


def test_a_new_epoch_this_sidecar_missed_reaches_every_subscriber_on_the_next_subscribe() -> None:
    """In a fleet, Redis may lose its data while this sidecar's feed stays up
    (another host's sidecar saw it): a subscription never starts from the
    stale epoch, and the subscribers already here are told to reset."""

    async def scenario() -> None:
        redis = Streams()
        async with (
            serving(redis) as (push, client),
            client.ws_connect("/ws") as old,
            client.ws_connect("/ws") as new,
        ):
            assert (await subscribe(old, "news"))["epoch"] == push.epoch
            redis.lose_everything()
            redis.values[shared.epoch_key(PREFIX)] = "E2"
            answer = await subscribe(new, "news")
            assert (answer["type"], answer["epoch"]) == ("subscribed", "E2")
            reset = await receive(old)
            assert (reset["type"], reset["channel"], reset["epoch"]) == ("reset", "news", "E2")
            assert reset["reason"] == "the history was lost (Redis started afresh)"
            assert push.epoch == "E2"

    run(scenario())


def test_during_an_outage_clients_stay_connected_and_the_feed_resumes() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            await subscribe(ws, "news")
            redis.down = True
            assert await receive(ws, timeout=3) == {"type": "status", "feed": "interrupted"}
            assert (await client.get("/")).status == 503
            async with client.ws_connect("/ws") as other:
                assert await receive(other) == {"type": "status", "feed": "interrupted"}
                refused = await subscribe(other, "news")
                assert refused["type"] == "refused" and refused["reason"].startswith("unavailable")
            redis.down = False
            assert await receive(ws, timeout=5) == {"type": "status", "feed": "live"}
            assert (await client.get("/")).status == 200
            live = await redis.publish("news", {"n": 1})
            assert [m["id"] for m in await messages(ws, 1)] == [live]
            assert not ws.closed

    run(scenario())


def test_private_channels_need_a_valid_token_before_any_message() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client), client.ws_connect("/ws") as ws:
            for token, reason in (
                (None, "no valid token"),
                ("123.forged", "token not valid for this channel"),
                (shared.sign_token(SECRET, "orders.1", -1), "token expired"),
                (shared.sign_token(SECRET, "orders.2", 60), "token not valid for this channel"),
            ):
                answer = await subscribe(ws, "orders.1", token=token)
                assert answer == {"type": "refused", "channel": "orders.1", "reason": reason}
            assert push.channels == {}
            await redis.publish("orders.1", {"secret": True})
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.3)
            ok = await subscribe(ws, "orders.1", token=shared.sign_token(SECRET, "orders.1", 60))
            assert ok["type"] == "subscribed"

    run(scenario())


def test_bad_requests_and_unsubscribe() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client), client.ws_connect("/ws") as ws:
            await ws.send_str("not json")
            assert (await receive(ws))["reason"] == "bad request"
            await ws.send_json({"type": "publish", "channel": "news"})
            assert (await receive(ws))["reason"] == "bad request"
            await subscribe(ws, "news")
            assert (await subscribe(ws, "news"))["reason"] == "already subscribed"
            await ws.send_json({"type": "unsubscribe", "channel": "news"})
            await wait_for(lambda: push.channels == {})
            await redis.publish("news", {"n": 1})
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.3)

    run(scenario())


def test_one_frame_per_message_reaches_every_subscriber_and_is_counted() -> None:
    async def scenario() -> str:
        redis = Streams()
        async with serving(redis) as (push, client):
            sockets = [await client.ws_connect("/ws") for _ in range(20)]
            for ws in sockets:
                await subscribe(ws, "news")
            ids = [await redis.publish("news", {"n": n}) for n in range(5)]
            for ws in sockets:
                assert [m["id"] for m in await messages(ws, 5)] == ids
                await ws.close()
            return push.metrics.exposition()[0].decode()

    # What the dashboard's Prometheus endpoint shows of it.
    text = run(scenario())
    for sample in (
        'mod_wsgi_ws_sidecar_push_messages_total{sidecar="push"} 5.0',
        'mod_wsgi_ws_sidecar_push_deliveries_total{sidecar="push"} 100.0',
        'mod_wsgi_ws_sidecar_fanout_seconds_count{sidecar="push"} 5.0',
        'mod_wsgi_ws_sidecar_websockets_accepted_total{sidecar="push"} 20.0',
    ):
        assert sample in text, text


def test_only_requests_with_the_secret_are_served() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, secret="s" * 43) as (_push, client):
            assert (await client.get("/")).status == 403
            answer = await client.get("/", headers={sidecar.SECRET_HEADER: "s" * 43})
            assert answer.status == 200 and "PushFeed" in await answer.text()
            script = await client.get("/push.js", headers={sidecar.SECRET_HEADER: "s" * 43})
            assert "class PushFeed" in await script.text()

    run(scenario())


def test_a_full_sidecar_refuses_before_the_handshake() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, max_clients=2) as (_push, client):
            held = [await client.ws_connect("/ws") for _ in range(2)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws")
            assert refused.value.status == 503
            for ws in held:
                await ws.close()

    run(scenario())


def test_a_cross_site_page_cannot_open_the_push_websocket() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, origins=("https://app.example:443",)) as (_push, client):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
            assert refused.value.status == 403
            allowed = await client.ws_connect("/ws", headers={"Origin": "https://app.example"})
            assert (await subscribe(allowed, "news"))["type"] == "subscribed"
            await allowed.close()

    run(scenario())
