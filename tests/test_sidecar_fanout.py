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


class Socket:
    """A client's transport as broadcast sees it: what was written to it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written.append(data)


class Open:
    closed = False


def server_with(count: int) -> tuple[core.WebSocketServer, list[Socket]]:
    config = core.ServerConfig(max_clients=count)
    server = core.WebSocketServer(
        config, sidecar_metrics.open_metrics("fanout", None), logging.getLogger("t"), what="t"
    )
    sockets = [Socket() for _ in range(count)]
    for n, sock in enumerate(sockets):
        server.clients[core.Client(Open(), sock, f"peer{n}")] = None  # type: ignore[arg-type]
    return server, sockets


def broadcast_pauses(
    monkeypatch: pytest.MonkeyPatch, count: int, spread: float
) -> tuple[list[float], list[Socket]]:
    """The pauses broadcast took between batches, and the clients' sockets."""
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    server, sockets = server_with(count)
    monkeypatch.setattr(core.asyncio, "sleep", sleep)
    asyncio.run(server.broadcast(FRAME, spread))
    return pauses, sockets


@pytest.mark.parametrize(
    ("count", "spread", "pauses"),
    [
        (1, 0.25, []),
        (core.BROADCAST_BATCH, 0.25, []),
        (core.BROADCAST_BATCH + 1, 0.25, [0.25]),
        (5 * core.BROADCAST_BATCH, 0.25, [0.0625] * 4),
        (5 * core.BROADCAST_BATCH, 0.0, [0.0] * 4),
    ],
)
def test_every_client_gets_the_frame_once_and_the_batches_are_paced(
    monkeypatch: pytest.MonkeyPatch, count: int, spread: float, pauses: list[float]
) -> None:
    took, sockets = broadcast_pauses(monkeypatch, count, spread)
    assert took == pytest.approx(pauses)
    assert sum(took) == pytest.approx(spread if count > core.BROADCAST_BATCH else 0.0)
    assert all(sock.written == [FRAME] for sock in sockets)


def test_the_dashboards_spread_leaves_each_process_part_of_its_turn() -> None:
    # Paced over its turn or longer, one process's last clients would get a
    # tick when the next process already sends its own.
    assert 0 < dashboard.FANOUT_SPREAD < 1
