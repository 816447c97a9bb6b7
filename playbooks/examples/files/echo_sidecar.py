"""A user's own WebSocket sidecar: a Starlette app served by uvicorn, started
from a mod_wsgi service script (WSGIImportScript) in its own daemon group.

The role writes this sidecar's listener to /etc/mod_wsgi_ws_sidecar/NAME.json,
NAME being the sidecar's name: the daemon process group (mod_wsgi.process_group),
which mod_wsgi-express calls "service:NAME":
    {"name": ..., "listen": {"host": ..., "port": ...} or {"path": ...},
     "max_clients": 50, "prefix": "/ws", "secret": ...}

Apache adds the secret to every request it proxies here (the X-Sidecar-Secret
header); any request without it came from someone who reached the listener
directly, around Apache's access rules, and is refused (HTTP 403).

Routes, as seen through Apache at the mount (for example /ws/):
    GET  /ws/      this sidecar's name, its prefix and whether it can read
                   Apache's scoreboard (mod_wsgi.server_metrics() is None
                   unless the group has server-metrics=on)
    WS   /ws/echo  sends every text message straight back; a client beyond
                   max_clients is refused (HTTP 403) before the handshake
"""

import contextlib
import hmac
import json

import mod_wsgi
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

NAME = mod_wsgi.process_group.removeprefix("service:")
with open(f"/etc/mod_wsgi_ws_sidecar/{NAME}.json", encoding="utf-8") as fh:
    CONFIG = json.load(fh)
SECRET = CONFIG["secret"].encode()


def from_apache(headers: dict[bytes, bytes]) -> bool:
    return hmac.compare_digest(headers.get(b"x-sidecar-secret", b""), SECRET)


class OnlyFromApache:
    """Refuses, before any route runs, a request or upgrade without the secret."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not from_apache(dict(scope["headers"])):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # HTTP 403
            else:
                await PlainTextResponse("only Apache may reach this sidecar\n", 403)(
                    scope, receive, send
                )
            return
        await self.app(scope, receive, send)


async def status(request):
    return JSONResponse(
        {
            "sidecar": CONFIG["name"],
            "prefix": request.headers.get("x-forwarded-prefix", ""),
            "server_metrics": mod_wsgi.server_metrics() is not None,
        }
    )


clients = 0


async def echo(websocket):
    global clients
    if clients >= CONFIG["max_clients"]:
        # Apache's pool for this route only bounds the threads it may take;
        # the exact cap is the app's. Closing before accept refuses the upgrade.
        await websocket.close(code=1013)
        return
    clients += 1
    try:
        await websocket.accept()
        async for message in websocket.iter_text():
            await websocket.send_text(message)
    finally:
        clients -= 1


app = OnlyFromApache(Starlette(routes=[Route("/", status), WebSocketRoute("/echo", echo)]))


class ServiceScriptServer(uvicorn.Server):
    """uvicorn inside mod_wsgi, which owns the process's signals: it stops a
    service script by raising SystemExit in it. uvicorn's own handlers would
    swallow that stop, then fail restoring mod_wsgi's (not Python callables)."""

    @contextlib.contextmanager
    def capture_signals(self):  # uvicorn 0.29 and later (Debian 13)
        yield

    def install_signal_handlers(self):  # older uvicorn (Debian 12)
        pass


listen = CONFIG["listen"]
if "path" in listen:
    where = {"uds": listen["path"]}
else:
    where = {"host": listen["host"], "port": listen["port"]}
# Blocks for the life of the daemon process, as a service script should.
ServiceScriptServer(uvicorn.Config(app, **where, lifespan="off", log_level="info")).run()
