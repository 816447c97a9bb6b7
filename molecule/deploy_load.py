"""Traffic held across a deploy of new application code, run *inside* a
container under test; everything targets 127.0.0.1 and is bounded.

    PYTHON deploy_load.py --ready FILE --stop FILE [--path P] [--rate R]
                          [--websockets N] [--subscribers N] [--max-seconds S]

PYTHON is the application's (it imports the publisher, mod_wsgi_ws_sidecar.push,
and aiohttp). Opens N WebSockets to the dashboard (it streams a frame a
second) and N push subscribers on a private channel, with a token the
publisher signs; once all are open, creates the ready FILE and from then on
sends GET P at a steady R per second (each request on its own, not waiting
for the last) and publishes a message every 0.1 s. When the stop FILE
appears (or S seconds passed) it waits for what is in flight, and prints
one JSON report: every failed request with its reason, every WebSocket or
subscription that closed, the messages each subscriber missed or got
twice, and when each answer (each release) first and last came (Unix time).
"""

import argparse
import asyncio
import json
import os
import time

BASE = "http://127.0.0.1"
DASHBOARD = "ws://127.0.0.1/metrics/ws"
PUSH = "ws://127.0.0.1/push/ws"
CHANNEL = "load.deploy"


async def hold(http, url: str, closed: list, stop: asyncio.Event, on_text, hello=None) -> None:
    """One WebSocket held until `stop`: each text frame to `on_text`, any
    other (a close, an error) noted in `closed`."""
    async with http.ws_connect(url, timeout=10) as ws:
        if hello:
            await ws.send_json(hello)
        on_text(None)
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(ws.receive(), 0.5)
            except TimeoutError:
                continue
            if message.type.name != "TEXT":
                closed.append(f"{url} {message.type.name} {ws.close_code} at {time.time():.3f}")
                return
            on_text(json.loads(message.data))


def dashboard_client(opened: list):
    def on_text(frame) -> None:
        if frame is None:
            opened.append(1)

    return on_text


def push_subscriber(subscribed: list, received: list):
    def on_text(frame) -> None:
        if frame and frame.get("type") == "subscribed":
            subscribed.append(1)
        elif frame and frame.get("type") == "message":
            received.append(frame["id"])

    return on_text


async def request(http, path: str, results: list) -> None:
    sent = time.time()
    try:
        async with http.get(BASE + path, timeout=60) as answer:
            body = (await answer.text()).strip()
            results.append({"sent": sent, "status": answer.status, "body": body[:80]})
    except Exception as error:  # every failure is reported, by its kind
        results.append({"sent": sent, "status": 0, "body": f"{type(error).__name__}: {error}"})


async def main(args) -> dict:
    import aiohttp
    from mod_wsgi_ws_sidecar import push

    stop = asyncio.Event()
    subscribe = {"type": "subscribe", "channel": CHANNEL, "token": push.token(CHANNEL, ttl=900)}
    opened, closed, subscribed = [], [], []
    inboxes = [[] for _ in range(args.subscribers)]
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        holders = [
            asyncio.create_task(hold(http, DASHBOARD, closed, stop, dashboard_client(opened)))
            for _ in range(args.websockets)
        ] + [
            asyncio.create_task(
                hold(http, PUSH, closed, stop, push_subscriber(subscribed, inbox), subscribe)
            )
            for inbox in inboxes
        ]
        deadline = time.monotonic() + 30
        while len(opened) < args.websockets or len(subscribed) < args.subscribers:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(opened)} WebSockets, {len(subscribed)} subscribers")
            await asyncio.sleep(0.05)
        with open(args.ready, "w"):
            pass
        results, published, requests = [], [], []
        loop = asyncio.get_running_loop()
        end = time.monotonic() + args.max_seconds
        tick = 0
        started = time.monotonic()
        while not os.path.exists(args.stop) and time.monotonic() < end:
            requests.append(asyncio.create_task(request(http, args.path, results)))
            if tick % max(1, round(args.rate / 10)) == 0:
                published.append(
                    await loop.run_in_executor(None, push.publish, CHANNEL, {"n": len(published)})
                )
            tick += 1
            await asyncio.sleep(max(0.0, started + tick / args.rate - time.monotonic()))
        await asyncio.gather(*requests)
        # The last messages' way to the subscribers.
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*holders, return_exceptions=True)
    releases: dict[str, dict] = {}
    for r in results:
        if r["status"] == 200:
            seen = releases.setdefault(r["body"], {"first": r["sent"], "last": r["sent"]})
            seen["first"], seen["last"] = (
                min(seen["first"], r["sent"]),
                max(seen["last"], r["sent"]),
            )
    wanted = set(published)
    return {
        "requests": len(results),
        "failed": [r for r in results if r["status"] != 200],
        "releases": releases,
        "websockets": len(opened),
        "subscribers": len(subscribed),
        "closed": closed,
        "published": len(published),
        "missed": [len(wanted - set(inbox)) for inbox in inboxes],
        "twice": [len(inbox) - len(set(inbox)) for inbox in inboxes],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--websockets", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=240)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
