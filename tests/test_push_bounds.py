"""What one browser can make the push sidecar hold or do, bounded: a resume
replays at the pace the client reads and never queues more than the send
buffer limit; live messages waiting behind a replay are bounded the same
way; requests and channels per connection are limited."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
from typing import Any

import pytest
from mod_wsgi_ws_sidecar import push_sidecar
from push_standin import Streams, receive, run, serving, subscribe, wait_for

LIMIT = 262144
BIG = "x" * 60_000


async def silent_client(port: int, request: dict[str, Any]) -> socket.socket:
    """A WebSocket client that sends one request and never reads again, with
    a small receive buffer, so that the server's unsent bytes pile up."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, handshake.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += await loop.sock_recv(sock, 1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    payload = json.dumps(request).encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await loop.sock_sendall(sock, bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


async def replayer_that_never_reads(redis: Streams, client: Any) -> socket.socket:
    """A client that saw the channel demo.big when it was empty, comes back
    after 300 messages of 60 KB to be replayed them all, and reads none."""
    async with client.ws_connect("/ws") as ws:
        first = await subscribe(ws, "demo.big")
    for _ in range(300):
        await redis.publish("demo.big", BIG, maxlen=300)
    request = {"type": "subscribe", "channel": "demo.big"}
    request |= {"since": first["position"], "epoch": first["epoch"]}
    return await silent_client(client.server.port, request)


async def most_unsent(push: push_sidecar.PushSidecar, until: Any) -> int:
    """The largest count of unsent bytes any client had in the sidecar,
    sampled until `until()`. A client that never reads cannot lower it, so
    the last sample before its drop is its peak."""
    most = 0
    while not until():
        for client in push.clients:
            most = max(most, client.transport.get_write_buffer_size())
        await asyncio.sleep(0.002)
    return most


def test_a_client_that_never_reads_cannot_make_a_replay_queue_past_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """300 messages of 60 KB asked for again (18 MB): the sidecar holds at
    most its buffer limit for the client, then drops it."""
    caplog.set_level(logging.WARNING, logger="push")

    async def scenario() -> None:
        redis = Streams()
        async with serving(redis, max_send_buffer=LIMIT, history=300) as (push, client):
            sock = await replayer_that_never_reads(redis, client)
            try:
                await wait_for(lambda: len(push.clients) == 1)
                peak = await asyncio.wait_for(most_unsent(push, lambda: not push.clients), 10)
            finally:
                sock.close()
            assert 0 < peak <= LIMIT, peak

    run(scenario(), timeout=30)
    assert "replay unread for longer than 1.0s" in caplog.text


def test_live_messages_waiting_behind_a_stuck_replay_are_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="push")

    async def scenario() -> None:
        redis = Streams()
        overrides = {"max_send_buffer": LIMIT, "history": 300, "send_timeout": 10.0}
        async with serving(redis, **overrides) as (push, client):
            sock = await replayer_that_never_reads(redis, client)
            try:
                await wait_for(lambda: "demo.big" in push.channels)
                # Five more live messages (300 KB) than its stuck replay leaves room for.
                for _ in range(5):
                    await redis.publish("demo.big", BIG, maxlen=300)
                await wait_for(lambda: not push.clients, timeout=5)
            finally:
                sock.close()

    run(scenario(), timeout=30)
    assert "bytes of live messages waiting behind its replay" in caplog.text


def test_channels_per_connection_are_a_setting() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with (
            serving(redis, max_channels=2) as (_push, client),
            client.ws_connect("/ws") as ws,
        ):
            for name in ("news", "demo.a"):
                assert (await subscribe(ws, name))["type"] == "subscribed"
            answer = await subscribe(ws, "demo.b")
            assert answer == {
                "type": "refused",
                "channel": "demo.b",
                "reason": "at most 2 channels per connection",
            }

    run(scenario())


def test_requests_past_the_rate_are_refused_without_touching_redis() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with (
            serving(redis, max_channels=2) as (_push, client),
            client.ws_connect("/ws") as ws,
        ):
            # A burst of twice the channels is allowed; unsubscribing answers nothing.
            for _ in range(4):
                await ws.send_json({"type": "unsubscribe", "channel": "news"})
            await ws.send_json({"type": "subscribe", "channel": "news"})
            answer = await receive(ws)
            assert answer == {"type": "refused", "channel": "news", "reason": "too many requests"}
            await asyncio.sleep(1 / push_sidecar.REQUESTS_PER_SECOND + 0.05)
            assert (await subscribe(ws, "news"))["type"] == "subscribed"

    run(scenario())


def test_the_request_budget_refills_at_its_rate_up_to_its_burst() -> None:
    budget = push_sidecar.RequestBudget(rate=10.0, burst=3, now=0.0)
    assert [budget.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.take(0.05) is False  # half a request earned
    assert budget.take(0.1) is True
    assert [budget.take(100.0) for _ in range(4)] == [True, True, True, False]
