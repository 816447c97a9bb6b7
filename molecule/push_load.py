"""Subscribers and a publisher of the push channel, run *inside* a container under test.

N WebSocket clients subscribe to one channel through Apache and behave as the
browser client (files/mod_wsgi_ws_sidecar/push.js) does: on any disconnect they reconnect with
backoff and ask for what followed the last position they saw. Meanwhile the
demo WSGI application is asked to publish RATE numbered messages a second
(POST /push-demo/publish, through Apache), and commands run at given times
(reload Apache, kill the sidecar, restart Redis). Then every client's
messages are checked against what the application said it published:

    python3 push_load.py --clients 200 --rate 50 --seconds 20 \
        --event '6:systemctl reload apache2' --event '12:pkill -9 -f "^.wsgi:push"'

aiohttp only (Debian's python3-aiohttp is on every host with a push
sidecar). Every loop is bounded in count and time; everything targets
127.0.0.1. Prints one JSON report on stdout.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import time

import aiohttp


def position(text):
    ms, seq = text.split("-")
    return int(ms), int(seq)


class Subscriber:
    def __init__(self, url, channel, token):
        self.url, self.channel, self.token = url, channel, token
        self.last = None
        self.epoch = None
        self.subscribed = asyncio.Event()
        self.numbers = []  # message numbers, in arrival order
        self.latencies = []  # ms from the stream entry's time to arrival
        self.duplicates = 0
        self.resets = []
        self.refusals = []
        self.statuses = []
        self.connects = 0

    def request(self):
        message = {"type": "subscribe", "channel": self.channel}
        if self.token:
            message["token"] = self.token
        if self.last is not None:
            message.update(since=self.last, epoch=self.epoch)
        return message

    def receive(self, message):
        kind = message.get("type")
        if kind == "message":
            if self.last is not None and position(message["id"]) <= position(self.last):
                self.duplicates += 1  # the server sent something twice, or out of order
                return
            self.last = message["id"]
            self.numbers.append(int(message["data"]["text"]))
            self.latencies.append(time.time() * 1000 - position(message["id"])[0])
        elif kind == "subscribed":
            self.epoch = message["epoch"]
            if self.last is None:
                self.last = message["position"]
            self.subscribed.set()
        elif kind == "reset":
            self.resets.append(message.get("reason"))
            self.epoch, self.last = message["epoch"], message["position"]
        elif kind == "refused":
            self.refusals.append(message.get("reason"))
            return "again"
        elif kind == "status":
            self.statuses.append(message.get("feed"))
        return None

    async def run(self, session, stop):
        delay = 0.2
        while not stop.is_set():
            self.connects += 1
            try:
                async with session.ws_connect(self.url, timeout=10, autoping=True) as ws:
                    await ws.send_json(self.request())
                    delay = 0.2
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        if self.receive(json.loads(msg.data)) == "again":
                            break
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
                pass
            if stop.is_set():
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


async def publish_all(session, url, channel, rate, seconds, until_file=""):
    """One message every 1/rate s (the clock keeps the cadence), for `seconds`
    or until `until_file` exists: number -> outcome."""
    outcomes = {}
    start = time.monotonic()
    count = int(rate * seconds)
    for number in range(count):
        if until_file and os.path.exists(until_file):
            break
        await asyncio.sleep(max(0.0, start + number / rate - time.monotonic()))
        began = time.monotonic()
        try:
            async with session.post(
                url, data={"channel": channel, "message": str(number)}, timeout=5
            ) as answer:
                body = (await answer.text()).strip()
                kind = "ok" if answer.status == 200 else f"http {answer.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            body, kind = repr(exc), "error"
        outcomes[number] = {
            "outcome": kind,
            "body": body[:200],
            "seconds": round(time.monotonic() - began, 3),
        }
    return outcomes


async def run_event(at, command, start):
    await asyncio.sleep(max(0.0, start + at - time.monotonic()))
    began = time.time()
    proc = await asyncio.create_subprocess_shell(command)
    rc = await asyncio.wait_for(proc.wait(), 60)
    return {"at": at, "command": command, "rc": rc, "started": began}


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)


def check(client, ok, maybe):
    """What is wrong with one client's messages: gaps, extras, disorder."""
    seen = set(client.numbers)
    problems = []
    missing = sorted(set(ok) - seen)
    extra = sorted(seen - set(ok) - set(maybe))
    if missing:
        problems.append(f"missing {len(missing)}: {missing[:5]}")
    if extra:
        problems.append(f"unpublished {extra[:5]}")
    if len(seen) != len(client.numbers) or client.duplicates:
        problems.append(f"duplicates {len(client.numbers) - len(seen) + client.duplicates}")
    if client.numbers != sorted(client.numbers):
        problems.append("out of order")
    if client.resets:
        problems.append(f"resets {client.resets[:2]}")
    return problems, len(missing)


async def main_async(args):
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = [Subscriber(args.ws, args.channel, args.token) for _ in range(args.clients)]
        tasks = [asyncio.ensure_future(c.run(session, stop)) for c in clients]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(c.subscribed.wait() for c in clients)), args.connect_within
            )
        subscribed = sum(c.subscribed.is_set() for c in clients)
        start = time.monotonic()
        events = [
            asyncio.ensure_future(run_event(float(at), command, start))
            for at, _, command in (e.partition(":") for e in args.event)
        ]
        outcomes = await publish_all(
            session, args.publish, args.channel, args.rate, args.seconds, args.until_file
        )
        done = await asyncio.gather(*events)
        ok = [n for n, o in outcomes.items() if o["outcome"] == "ok"]
        # A publish that failed may still have reached the history (Redis went
        # away after it wrote the entry): it may arrive, or not.
        maybe = [n for n, o in outcomes.items() if o["outcome"] != "ok"]
        last = max(ok) if ok else None
        deadline = time.monotonic() + args.settle
        while last is not None and time.monotonic() < deadline:
            if all(last in c.numbers for c in clients):
                break
            await asyncio.sleep(0.1)
        settled = round(time.monotonic() - (deadline - args.settle), 2)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    problems = {}
    missing_total = silently_missing = 0
    for index, client in enumerate(clients):
        found, missing = check(client, ok, maybe)
        missing_total += missing
        # Missed, and never told to reset: the one outcome the push channel rules out.
        silently_missing += 0 if client.resets else missing
        if found:
            problems[index] = found
    latencies = [value for c in clients for value in c.latencies]
    failed = {n: o for n, o in outcomes.items() if o["outcome"] != "ok"}
    return {
        "clients": args.clients,
        "subscribed_before_publishing": subscribed,
        "published": len(ok),
        "publish_failures": len(failed),
        "publish_failure_samples": dict(list(failed.items())[:5]),
        "slowest_publish_s": max((o["seconds"] for o in outcomes.values()), default=None),
        "clients_with_problems": len(problems),
        "problem_samples": dict(list(problems.items())[:10]),
        "missing_total": missing_total,
        "silently_missing_total": silently_missing,
        "duplicates_total": sum(c.duplicates for c in clients),
        "resets_total": sum(len(c.resets) for c in clients),
        "refusals_total": sum(len(c.refusals) for c in clients),
        "reconnects_total": sum(c.connects - 1 for c in clients),
        "statuses_seen": sorted({s for c in clients for s in c.statuses}),
        "received_total": sum(len(c.numbers) for c in clients),
        "settled_in_s": settled,
        "latency_ms": {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": percentile(latencies, 1.0),
        },
        "events": done,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws", default="ws://127.0.0.1/push/ws")
    parser.add_argument("--publish", default="http://127.0.0.1/push-demo/publish")
    parser.add_argument("--channel", default="demo")
    parser.add_argument("--token", default="")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connect-within", type=float, default=60)
    parser.add_argument("--settle", type=float, default=30)
    parser.add_argument("--event", action="append", default=[], help="SECONDS:COMMAND")
    parser.add_argument("--until-file", default="", help="stop publishing once this file exists")
    args = parser.parse_args()
    if not (1 <= args.clients <= 20000 and 0 < args.rate <= 1000 and 0 < args.seconds <= 300):
        parser.error("bounds: 1-20000 clients, rate up to 1000/s, at most 300 s")
    print(json.dumps(asyncio.run(main_async(args)), indent=1))


if __name__ == "__main__":
    main()
