"""The comparison for the push benchmark: python-socketio's AsyncServer on
aiohttp with its AsyncRedisManager, the way Socket.IO fans out what a web
application publishes (a write-only RedisManager) to rooms. Clients join the
room they name. Debian 12's python3-socketio; 127.0.0.1:8090, no Apache in
front (bench/push_bench.py compares the role's path through Apache with it).

    python3 socketio_server.py redis://127.0.0.1:6380/0
"""

import sys

import socketio
from aiohttp import web

server = socketio.AsyncServer(
    async_mode="aiohttp", client_manager=socketio.AsyncRedisManager(sys.argv[1])
)


@server.on("join")
async def join(sid, room):
    server.enter_room(sid, room)
    return True


app = web.Application()
server.attach(app)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=8090, access_log=None, print=None)
