"""Any text frame a browser can send, property-based: the push sidecar
answers it with a clean frame (refused, subscribed, reset, renewed) or nothing, and
never raises or logs an error. Drives PushSidecar.received (the core's hook) directly, with
the in-memory Redis, on one event loop for every example."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mod_wsgi_ws_sidecar import core, push_sidecar
from mod_wsgi_ws_sidecar import push as shared
from push_standin import SECRET, Down, Streams, config

# Every character, lone surrogates included (a JSON "\\ud800" decodes to one).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
TOKENS = st.sampled_from(
    [shared.sign_token(SECRET, "orders.1", 3600), "².x", "1.\ud800", "9" * 30 + ".a"]
)
POSITIONS = st.sampled_from(["0-0", "1-0", "²-1", "1-²", "9" * 25 + "-0", "-", "1--1"])
REQUESTS = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "renew", "unsubscribe"]) | JSON},
    optional={
        "channel": st.sampled_from(["news", "demo.a", "orders.1", "\ud800"]) | JSON,
        "token": TOKENS | JSON,
        "since": POSITIONS | JSON,
        "epoch": st.sampled_from(["E1"]) | JSON,
    },
)
NESTED = st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth)
FRAMES = REQUESTS.map(json.dumps) | JSON.map(json.dumps) | ANY_TEXT | NESTED


class Transport:
    """What the sidecar writes to a client, kept."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.closing = True


class Socket:
    closed = False


def texts(written: list[bytes]) -> list[dict[str, Any]]:
    """The JSON of each unmasked text frame the server wrote."""
    found, data = [], b"".join(written)
    while data:
        assert data[0] == 0x81, data[:2]
        size, start = data[1], 2
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10], "big"), 10
        found.append(json.loads(data[start : start + size]))
        data = data[start + size :]
    return found


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def push(loop: asyncio.AbstractEventLoop) -> push_sidecar.PushSidecar:
    redis = Streams()
    push = push_sidecar.PushSidecar(config(), redis, redis, (Down,))
    push.epoch, push.feed_problem = "E1", None
    loop.run_until_complete(redis.set(shared.epoch_key(push.config.prefix), "E1"))
    return push


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(FRAMES, min_size=1, max_size=5))
def test_any_frame_gets_a_clean_answer_or_none(
    loop: asyncio.AbstractEventLoop, push: push_sidecar.PushSidecar, frames: list[str]
) -> None:
    errors = Errors()
    logging.getLogger().addHandler(errors)
    transport = Transport()
    client = core.Client(Socket(), transport, "peer")  # type: ignore[arg-type]
    push.clients[client] = push_sidecar.Connection(push_sidecar.RequestBudget(1000, 1000, 0))
    try:
        for frame in frames:
            loop.run_until_complete(push.received(client, frame))
    finally:
        push.forget(client)
        logging.getLogger().removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert not transport.closing
    for answer in texts(transport.written):
        assert answer["type"] in ("refused", "subscribed", "reset", "renewed"), answer
        assert answer["channel"] is None or isinstance(answer["channel"], str), answer
