"""docs/sidecar-core.md's example, a sidecar of the user's own on the
package's core, run as the page shows it: served by core.serve_app on a
unix socket, as the role's settings would have it, with real WebSocket
clients (aiohttp's) on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import types
from pathlib import Path

import aiohttp
import pytest
from mod_wsgi_ws_sidecar import core

PAGE = Path(__file__).resolve().parents[1] / "docs/sidecar-core.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
SECRET = "room-secret-".ljust(43, "s")


def example_module() -> types.ModuleType:
    module = types.ModuleType("room_sidecar")
    exec(compile(BLOCKS[0], str(PAGE), "exec"), module.__dict__)
    return module


def test_the_last_lines_run_main_with_the_roles_settings_file() -> None:
    assert 'main(f"/etc/mod_wsgi_ws_sidecar/{mod_wsgi.process_group}.json")' in BLOCKS[1]


def test_the_example_serves_as_the_page_says(tmp_path: Path) -> None:
    room = example_module()
    socket_path = str(tmp_path / "sidecar.sock")
    # What the role writes for a sidecar with a script (its NAME.json).
    settings = {
        "name": "room",
        "listen": {"path": socket_path},
        "max_clients": 2,
        "origins": [],
        "secret": SECRET,
        "prefix": "/room",
    }
    config = room.parse_config(settings)
    server = room.Room(config)

    async def scenario() -> None:
        stop = asyncio.Event()
        serving = asyncio.ensure_future(core.serve_app(server.app, config, dict, "the room", stop))
        for _ in range(100):
            if Path(socket_path).exists():
                break
            await asyncio.sleep(0.02)
        connector = aiohttp.UnixConnector(path=socket_path)
        apache = {core.SECRET_HEADER: SECRET}
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get("http://localhost/ws") as refused:
                assert refused.status == 403  # no secret: not from Apache
            async with (
                session.ws_connect("http://localhost/ws", headers=apache) as first,
                session.ws_connect("http://localhost/ws", headers=apache) as second,
            ):
                assert json.loads((await first.receive(timeout=5)).data)["type"] == "hello"
                assert json.loads((await second.receive(timeout=5)).data) == {
                    "type": "hello",
                    "here": 2,
                }
                async with session.get("http://localhost/ws", headers=apache) as full:
                    assert full.status == 503  # max_clients
                await first.send_str("hi")
                for ws in (first, second):
                    said = json.loads((await ws.receive(timeout=5)).data)
                    assert said == {"type": "said", "text": "hi"}
                assert [state["said"] for state in server.clients.values()] in ([1, 0], [0, 1])
        stop.set()
        await asyncio.wait_for(serving, 10)

    asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize("bad", [{"listen": {"port": 0}}, {"listen": {"path": "x"}}])
def test_its_settings_are_checked_by_the_core(bad: dict) -> None:
    with pytest.raises(core.ConfigError, match="listen"):
        example_module().parse_config(bad)
