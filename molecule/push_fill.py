"""Fills a push sidecar with subscribers through Apache, run *inside* a container under test.

    python3 push_fill.py --clients 200 --channel demo.public.fill

Opens N WebSockets to ws://127.0.0.1/push/ws at once, each subscribing to
CHANNEL, and notes how each ended: subscribed, refused at the upgrade (its
HTTP status), refused by the sidecar (its reason), or failed. Holding every
one open, it has the application's module publish one message (as root, it
reads the sidecar's settings) and counts the subscribed clients it reached
within 10 s. aiohttp only; everything targets 127.0.0.1; every wait is
bounded. Prints one JSON report.
"""

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time

import aiohttp

# Where the role installs its package (mod_wsgi_ws_sidecar), the application's python-path.
LIB = "/usr/local/lib/mod_wsgi_ws_sidecar/python"
WS_URL = "ws://127.0.0.1/push/ws"


async def subscribe(session, channel):
    """One client: (outcome, its open WebSocket or None)."""
    try:
        ws = await session.ws_connect(WS_URL, timeout=10)
    except aiohttp.WSServerHandshakeError as exc:
        return f"http {exc.status}", None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return f"failed: {exc!r}", None
    await ws.send_json({"type": "subscribe", "channel": channel})
    with contextlib.suppress(asyncio.TimeoutError):
        while True:
            msg = await ws.receive(timeout=20)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return f"closed: {msg.type}", None
            frame = json.loads(msg.data)
            if frame["type"] in ("subscribed", "refused", "reset"):
                kind = frame["type"]
                return (kind if kind != "refused" else f"refused: {frame['reason']}"), ws
    return "no answer", ws


async def received(ws, channel, position):
    with contextlib.suppress(asyncio.TimeoutError):
        deadline = time.monotonic() + 10
        while (left := deadline - time.monotonic()) > 0:
            msg = await ws.receive(timeout=left)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return False
            frame = json.loads(msg.data)
            if frame.get("channel") == channel and frame.get("id") == position:
                return True
    return False


async def main_async(args):
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(
            *(subscribe(session, args.channel) for _ in range(args.clients))
        )
        outcomes = {}
        for outcome, _ws in results:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        sys.path.insert(0, LIB)
        from mod_wsgi_ws_sidecar import push

        position = push.publish(args.channel, {"text": "fill"})
        live = [ws for outcome, ws in results if outcome == "subscribed"]
        got = await asyncio.gather(*(received(ws, args.channel, position) for ws in live))
        for _outcome, ws in results:
            if ws is not None:
                await ws.close()
    return {"outcomes": outcomes, "subscribed": len(live), "reached": sum(got)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--channel", required=True)
    args = parser.parse_args()
    if not 0 < args.clients <= 2000:
        parser.error("bounds: at most 2000 clients")
    print(json.dumps(asyncio.run(asyncio.wait_for(main_async(args), 120))))


if __name__ == "__main__":
    main()
