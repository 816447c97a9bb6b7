"""The push channel's promise, each way it was found broken: a client that
comes back gets exactly what it missed, once and in order, or is told to
reset; never a silent gap, never a message twice."""

from __future__ import annotations

import asyncio

import pytest
from mod_wsgi_ws_sidecar import push as shared
from push_standin import PREFIX, Streams, messages, receive, run, serving, subscribe

TOO_FAR = "the history no longer reaches back that far"


def test_a_new_channel_past_its_history_while_away_means_reset_not_a_gap() -> None:
    """Subscribed while the channel had no message, away while five were
    published over a history of three: two are gone, so the client resets."""

    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, history=3) as (_push, client):
            async with client.ws_connect("/ws") as ws:
                first = await subscribe(ws, "news")
            assert first["type"] == "subscribed" and first["position"] != "0-0"
            for n in range(1, 6):
                await redis.publish("news", {"n": n}, maxlen=3)
            async with client.ws_connect("/ws") as ws:
                answer = await subscribe(ws, "news", since=first["position"], epoch=first["epoch"])
                assert (answer["type"], answer["reason"]) == ("reset", TOO_FAR)

    run(scenario())


def test_a_new_channel_within_its_history_while_away_replays_all_of_it() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, history=100) as (_push, client):
            async with client.ws_connect("/ws") as ws:
                first = await subscribe(ws, "news")
            published = [await redis.publish("news", {"n": n}, maxlen=100) for n in range(50)]
            async with client.ws_connect("/ws") as ws:
                await ws.send_json(
                    {
                        "type": "subscribe",
                        "channel": "news",
                        "since": first["position"],
                        "epoch": first["epoch"],
                    }
                )
                assert [m["id"] for m in await messages(ws, 50)] == published
                answer = await receive(ws)
                assert (answer["type"], answer["replayed"]) == ("subscribed", 50)

    run(scenario())


def test_a_burst_longer_than_the_history_between_two_reads_resets_live_subscribers() -> None:
    """Messages trimmed before the relay read them never reach anyone: its
    subscribers are told so instead of silently missing them."""

    async def scenario() -> None:
        redis = Streams()
        async with (
            serving(redis, history=3) as (push, client),
            client.ws_connect("/ws") as ws,
        ):
            await subscribe(ws, "news")
            # Published without yielding: the relay reads once, after all ten.
            for n in range(10):
                newest = await redis.publish("news", {"n": n}, maxlen=3)
            reset = await receive(ws)
            assert reset["type"] == "reset" and reset["position"] == newest
            assert reset["reason"] == "more messages came at once than the history keeps"
            live = await redis.publish("news", {"n": 10}, maxlen=3)
            assert [m["id"] for m in await messages(ws, 1)] == [live]
            assert push.channels["news"].last_id == live

    run(scenario())


def test_a_burst_the_history_holds_is_delivered_whole() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, history=3) as (_push, client), client.ws_connect("/ws") as ws:
            await subscribe(ws, "news")
            burst = [await redis.publish("news", {"n": n}, maxlen=3) for n in range(3)]
            assert [m["id"] for m in await messages(ws, 3)] == burst

    run(scenario())


class Paused:
    """A relay feed that reads only once let: a host whose relay is behind."""

    def __init__(self, redis: Streams) -> None:
        self.redis, self.go = redis, asyncio.Event()

    async def xread(self, streams: dict[str, str], count: int, block: int) -> list:
        await self.go.wait()
        return await self.redis.xread(streams, count, block)


def test_a_client_moving_to_a_host_that_is_behind_gets_nothing_twice() -> None:
    """It already holds five messages (from the host it left); this host's
    relay has not read them yet. It gets the sixth only, once."""

    async def scenario() -> None:
        redis = Streams()
        feed = Paused(redis)
        async with (
            serving(redis, feed=feed) as (_push, client),
            client.ws_connect("/ws") as watcher,
            client.ws_connect("/ws") as ws,
        ):
            epoch = (await subscribe(watcher, "news"))["epoch"]
            held = [await redis.publish("news", {"n": n}) for n in range(5)]
            answer = await subscribe(ws, "news", since=held[-1], epoch=epoch)
            assert (answer["type"], answer["position"], answer["replayed"]) == (
                "subscribed",
                held[-1],
                0,
            )
            newer = await redis.publish("news", {"n": 5})
            feed.go.set()
            assert [m["id"] for m in await messages(watcher, 6)] == [*held, newer]
            assert [m["id"] for m in await messages(ws, 1)] == [newer]
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.3)

    run(scenario())


def test_subscribers_who_came_after_redis_lost_its_data_are_not_told_to_reset() -> None:
    """A sidecar idle while Redis lost its data learns it from the first of
    many subscribes at once; those already on the new epoch get no reset."""

    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client):
            redis.lose_everything()
            redis.values[shared.epoch_key(PREFIX)] = "E2"
            redis.snapshot_delay = 0.05  # each read of a channel's state takes a while
            sockets = [await client.ws_connect("/ws") for _ in range(20)]
            for ws in sockets:
                await ws.send_json({"type": "subscribe", "channel": "news"})
            for ws in sockets:
                answer = await receive(ws)
                assert (answer["type"], answer["epoch"]) == ("subscribed", "E2"), answer
            for ws in sockets:
                with pytest.raises(TimeoutError):
                    await ws.receive(timeout=0.1)
                await ws.close()
            assert push.epoch == "E2"

    run(scenario())
