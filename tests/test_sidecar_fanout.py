"""A tick's fan-out (core.WebSocketServer.broadcast): every client gets the
frame once, in batches, and with a spread the batches are paced evenly over
it, the last one starting when the spread ends."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mod_wsgi_ws_sidecar import core, dashboard
from mod_wsgi_ws_sidecar import metrics as sidecar_metrics

FRAME = core.text_frame('{"type":"snapshot"}')


class Clock:
    """time.monotonic for broadcast: moves on with each pause, and with each
    write by `write_cost` (a host too busy to send in time)."""

    def __init__(self, write_cost: float = 0.0) -> None:
        self.now = 1000.0
        self.write_cost = write_cost

    def __call__(self) -> float:
        return self.now


class Socket:
    """A client's transport as broadcast sees it: what was written to it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.clock.now += self.clock.write_cost
        self.written.append(data)


class Open:
    closed = False


def broadcast_pauses(
    monkeypatch: pytest.MonkeyPatch, count: int, spread: float, write_cost: float = 0.0
) -> tuple[list[float], list[Socket], float]:
    """The pauses broadcast took between batches, the clients' sockets, and
    how long the broadcast took by the clock."""
    clock = Clock(write_cost)
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock.now += seconds
        await real_sleep(0)

    server = core.WebSocketServer(
        core.ServerConfig(max_clients=count),
        sidecar_metrics.open_metrics("fanout", None),
        logging.getLogger("t"),
        what="t",
    )
    sockets = [Socket(clock) for _ in range(count)]
    for n, sock in enumerate(sockets):
        server.clients[core.Client(Open(), sock, f"peer{n}")] = None  # type: ignore[arg-type]
    monkeypatch.setattr(core.asyncio, "sleep", sleep)
    monkeypatch.setattr(core.time, "monotonic", clock)
    started = clock.now
    asyncio.run(server.broadcast(FRAME, spread))
    return pauses, sockets, clock.now - started


BATCH, PAUSE = core.BROADCAST_BATCH, core.BATCH_PAUSE


@pytest.mark.parametrize(
    ("count", "spread", "pauses"),
    [
        (1, 0.25, []),
        (BATCH, 0.25, []),
        # A few clients over a batch wait one short pause, not the spread.
        (BATCH + 1, 0.25, [PAUSE]),
        # Many batches: evenly spaced until the spread ends, none further apart than PAUSE.
        (5 * BATCH, 4 * PAUSE, [PAUSE] * 4),
        (5 * BATCH, 2 * PAUSE, [PAUSE / 2] * 4),
        (21 * BATCH, 0.25, [0.0125] * 20),
        (5 * BATCH, 0.0, [0.0] * 4),
    ],
)
def test_every_client_gets_the_frame_once_and_the_batches_are_paced(
    monkeypatch: pytest.MonkeyPatch, count: int, spread: float, pauses: list[float]
) -> None:
    took, sockets, _ = broadcast_pauses(monkeypatch, count, spread)
    assert took == pytest.approx(pauses)
    assert all(sock.written == [FRAME] for sock in sockets)


def test_sends_slower_than_the_spread_are_not_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each write takes 0.1 ms: the first batch alone (50 ms) outlasts a 40 ms spread.
    took, sockets, elapsed = broadcast_pauses(monkeypatch, 4 * BATCH, 0.04, write_cost=1e-4)
    assert took == [0.0] * 3
    assert elapsed == pytest.approx(4 * BATCH * 1e-4)
    assert all(sock.written == [FRAME] for sock in sockets)


def test_the_dashboards_spread_leaves_each_process_part_of_its_turn() -> None:
    # Paced over its turn or longer, one process's last clients would get a
    # tick when the next process already sends its own.
    assert 0 < dashboard.FANOUT_SPREAD < 1
