"""Configurations (e) and (f)'s sidecar: a bare tunnel's far end.

Every tick it sends every client one frame of the same bytes as the
dashboard's frames on the direct path (d), whose size bench.py writes to
FRAME_BYTES_FILE before (e) starts: so (e) Apache and (f) nginx relay the
same payload as (c) and (d), and the dashboard's extra bytes through Apache
show apart from Apache's own cost. It stands on the package's core
(docs/sidecar-core.md), as a user's own sidecar does: the same admission,
cap and sending (paced alike) as the dashboard, none of its scoreboard
reading.

bench.py puts it in the dashboard's place for (e) and (f): the dashboard's
service script then calls run_service() with the dashboard's own settings,
so it has the dashboard's daemon processes, port, client cap (shared by its
processes), secret, and ticks: one an interval from each process, the
processes taking turns within it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time

from mod_wsgi_ws_sidecar import core, dashboard
from mod_wsgi_ws_sidecar import metrics as sidecar_metrics

FRAME_BYTES_FILE = "/opt/bench/flat-frame-bytes"
# The dashboard's frame on the direct path in the committed run, for a run without (d).
DEFAULT_FRAME_BYTES = 663
INTERVAL = core.DEFAULTS["poll_interval"]

log = logging.getLogger("flat")


def frame_bytes() -> int:
    try:
        with open(FRAME_BYTES_FILE, encoding="ascii") as fh:
            return max(64, int(fh.read().strip()))
    except (OSError, ValueError):
        return DEFAULT_FRAME_BYTES


def frame_text(seq: int, now: float, size: int) -> str:
    """A snapshot frame of exactly `size` characters (ASCII: bytes), with the
    `time` the load client measures the delay from."""
    text = json.dumps({"type": "snapshot", "seq": seq, "time": round(now, 3), "pad": ""})
    return text[:-2] + "x" * max(0, size - len(text)) + text[-2:]


class Flat(core.WebSocketServer):
    def __init__(self, config: core.ServerConfig) -> None:
        super().__init__(config, sidecar_metrics.open_metrics(config.name, None), log, what="flat")
        self.size = frame_bytes()
        self.app.on_startup.append(self._start)
        self.app.on_cleanup.append(self._stop)

    async def _start(self, _app: object) -> None:
        self.ticks = asyncio.create_task(self.run_ticks())

    async def _stop(self, _app: object) -> None:
        await core.stop_tasks((self.ticks,))
        self.cap.close()

    async def run_ticks(self) -> None:
        """The dashboard's schedule: process k of n ticks k/n of an interval
        after each multiple of it."""
        phase = (self.cap.slot % self.config.processes) / self.config.processes
        tick = math.floor(time.time() / INTERVAL - phase)
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, (tick + phase) * INTERVAL - time.time()))
            frame = core.text_frame(frame_text(tick, time.time(), self.size))
            await self.broadcast(frame, dashboard.FANOUT_SPREAD * INTERVAL / self.config.processes)


def parse_config(data: dict) -> core.ServerConfig:
    return core.ServerConfig(**core.parse_server(data, "flat"))


def run_service(config_path: str) -> None:
    config = core.load_config(config_path, parse_config)
    core.setup_logging(config.name)
    flat = Flat(config)
    core.run_until_exit(
        lambda: core.serve_app(flat.app, config, lambda: {flat.ticks: "tick task ended"}, "flat"),
        os._exit,
        core.RESTART_DELAY,
    )
