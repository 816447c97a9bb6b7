"""The comparison for the push benchmark: python-socketio's AsyncServer on
aiohttp with its AsyncRedisManager, the way Socket.IO fans out what a web
application publishes (a write-only RedisManager) to rooms. Clients join the
room they name. Debian 12's python3-socketio; 127.0.0.1:8090, no Apache in
front (bench/push_bench.py compares the role's path through Apache with it).

    python3 socketio_server.py redis://127.0.0.1:6380/0
"""

import resource
import sys

import socketio
from aiohttp import web

# One descriptor per client: the shell that starts it leaves the soft limit
# at 1,024, which capped it at 1,016 clients (as the driver lifts its own).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))

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
