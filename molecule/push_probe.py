"""One push channel client, or one publish, run *inside* a container under test.

    python3 push_probe.py session CHANNEL [--since ID --epoch E] [--token T]
                                  [--publish TEXT]... [--ready FILE] [--frames N] [--timeout S]
        subscribe through Apache (ws://127.0.0.1/push/ws); once subscribed, ask
        the demo application to publish each TEXT; once the sidecar answered the
        subscription (subscribed, refused...), create FILE, for a test to publish
        after that; collect frames until N have come or S seconds passed, and
        the moment (Unix time) each came
    python3 push_probe.py publish CHANNEL TEXT [--count N]
        publish N messages {"text": "TEXT-i"} with the application's module
        (mod_wsgi_ws_sidecar.push, as root, which reads the sidecar's settings)
    python3 push_probe.py token CHANNEL [--ttl S] [--subject WHO]
        a token for CHANNEL, signed by the application's module
    python3 push_probe.py revoke [--subject WHO] [--channel CHANNEL]
        the application's module revokes those tokens; prints when it returned

Everything targets 127.0.0.1; every wait is bounded. Prints one JSON document.
"""

import argparse
import asyncio
import json
import sys
import time

# Where the role installs its package (mod_wsgi_ws_sidecar), the application's python-path.
LIB = "/usr/local/lib/mod_wsgi_ws_sidecar/python"
WS_URL = "ws://127.0.0.1/push/ws"
PUBLISH_URL = "http://127.0.0.1/push-demo/publish"
# The frames that answer a subscribe request.
ANSWERS = ("subscribed", "refused", "reset")


async def session(args):
    import aiohttp

    frames, times, published, ready = [], [], [], False
    request = {"type": "subscribe", "channel": args.channel}
    if args.token:
        request["token"] = args.token
    if args.since:
        request.update(since=args.since, epoch=args.epoch)
    deadline = time.monotonic() + args.timeout
    async with aiohttp.ClientSession() as http, http.ws_connect(WS_URL, timeout=5) as ws:
        await ws.send_json(request)
        while len(frames) < args.frames and (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                frames.append({"closed": str(msg.type)})
                break
            frame = json.loads(msg.data)
            frames.append(frame)
            times.append(time.time())
            # The sidecar's answer to the subscription (a status frame may come first).
            if args.ready and not ready and frame.get("type") in ANSWERS:
                open(args.ready, "w").close()
                ready = True
            if frame.get("type") == "subscribed" and args.publish and not published:
                for text in args.publish:
                    form = {"channel": args.channel, "message": text}
                    async with http.post(PUBLISH_URL, data=form, timeout=5) as answer:
                        published.append([answer.status, (await answer.text()).strip()])
    return {"frames": frames, "times": times, "published": published}


def publish(args):
    sys.path.insert(0, LIB)
    from mod_wsgi_ws_sidecar import push

    positions = [
        push.publish(args.channel, {"text": f"{args.text}-{i}"}) for i in range(args.count)
    ]
    return {"positions": positions}


def token(args):
    sys.path.insert(0, LIB)
    from mod_wsgi_ws_sidecar import push

    return {"token": push.token(args.channel, ttl=args.ttl, subject=args.subject or None)}


def revoke(args):
    sys.path.insert(0, LIB)
    from mod_wsgi_ws_sidecar import push

    position = push.revoke(subject=args.subject or None, channel=args.channel or None)
    return {"position": position, "at": time.time()}


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("session")
    one.add_argument("channel")
    one.add_argument("--since", default="")
    one.add_argument("--epoch", default="")
    one.add_argument("--token", default="")
    one.add_argument("--publish", action="append", default=[])
    one.add_argument("--ready", default="")
    one.add_argument("--frames", type=int, default=1)
    one.add_argument("--timeout", type=float, default=5.0)
    many = commands.add_parser("publish")
    many.add_argument("channel")
    many.add_argument("text")
    many.add_argument("--count", type=int, default=1)
    sign = commands.add_parser("token")
    sign.add_argument("channel")
    sign.add_argument("--ttl", type=float, default=60)
    sign.add_argument("--subject", default="")
    end = commands.add_parser("revoke")
    end.add_argument("--subject", default="")
    end.add_argument("--channel", default="")
    args = parser.parse_args()
    if args.command == "session":
        if not (0 < args.frames <= 5000 and 0 < args.timeout <= 60):
            parser.error("bounds: at most 5000 frames, 60 s")
        result = asyncio.run(session(args))
    elif args.command == "publish":
        if not 0 < args.count <= 5000:
            parser.error("bounds: at most 5000 messages")
        result = publish(args)
    elif args.command == "revoke":
        result = revoke(args)
    else:
        result = token(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
