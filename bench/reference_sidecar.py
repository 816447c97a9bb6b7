"""Configuration (a)'s sidecar: the behaviour of the worked example in mod_wsgi's guide
"Hosting WebSocket Applications", written afresh for the benchmark.

What it keeps from the guide, because that is what (a) measures: aiohttp on
127.0.0.1:8765; every second the whole scoreboard, json.dumps({"snapshot": ...},
indent=2), sent to one client after the other with `await ws.send_str`; no cap on
clients; a heartbeat of 30 s; the tick task started with the app and the import
blocked on an event that is never set.

Imported by WSGIImportScript into a daemon process group with threads=0 and
server-metrics=on (bench/reference-site.conf); the import never returns.
"""

import asyncio
import contextlib
import json
import logging

import mod_wsgi  # only importable inside Apache
from aiohttp import WSMsgType, web

HOST, PORT = "127.0.0.1", 8765
POLL_INTERVAL = 1.0
HEARTBEAT = 30.0

log = logging.getLogger("reference-sidecar")
clients: set[web.WebSocketResponse] = set()


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT)
    await ws.prepare(request)
    clients.add(ws)
    try:
        async for msg in ws:  # reading is what handles pongs and the close
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        clients.discard(ws)
    return ws


def snapshot_text() -> str:
    snapshot = mod_wsgi.server_metrics()
    if snapshot is None:
        return json.dumps({"error": "set server-metrics=on on this daemon group"}, indent=2)
    return json.dumps({"snapshot": snapshot}, indent=2)


async def broadcast_forever() -> None:
    while True:
        text = snapshot_text()
        for ws in list(clients):  # one after the other: a slow client delays the rest
            with contextlib.suppress(ConnectionResetError):  # the only error the guide expects
                await ws.send_str(text)
        await asyncio.sleep(POLL_INTERVAL)  # after the work, so ticks drift under load


async def serve() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = web.Application()
    app.router.add_get("/ws", websocket)
    tasks = []

    async def start_ticks(_app: web.Application) -> None:
        tasks.append(asyncio.create_task(broadcast_forever()))

    app.on_startup.append(start_ticks)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, HOST, PORT).start()
    log.info("serving on %s:%s", HOST, PORT)
    await asyncio.Event().wait()


asyncio.run(serve())
