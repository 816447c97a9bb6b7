"""molecule/wsclient.py, the tests' WebSocket client, against a real aiohttp server on
loopback (in a thread of its own, so that the client's blocking calls are tested as
the scripts in the containers make them), and the scripts that use it, staged as the
Molecule tests stage them."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import wsclient
from aiohttp import WSMsgType, web

MOLECULE_DIR = Path(__file__).resolve().parents[1] / "molecule"
# Around each boundary of the three length encodings: 7-bit, 16-bit, 64-bit.
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 300_000]
BIG = 70_000  # what /big sends last: more than a 16-bit length holds


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()  # answers pings and close frames by itself
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def headers(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(json.dumps(dict(request.headers)))
    async for _ in ws:
        pass
    return ws


async def big(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    for size in (100, 1000, BIG):
        await ws.send_bytes(bytes(i % 251 for i in range(size)))
    async for _ in ws:
        pass
    return ws


async def ping(request: web.Request) -> web.WebSocketResponse:
    """Pings the client, then tells it what came back."""
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    await ws.ping(b"are you there")
    msg = await ws.receive(timeout=5)
    await ws.send_str(json.dumps({"type": int(msg.type), "data": msg.data.decode()}))
    await ws.receive(timeout=5)  # the client's close
    await ws.close()
    return ws


async def refused(request: web.Request) -> web.Response:
    return web.Response(status=403, text="not you")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = web.Application()
    for handler in (echo, headers, big, ping, refused):
        app.router.add_get(f"/{handler.__name__}", handler)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    loop.run_until_complete(web.SockSite(runner, listener).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), 5)


def pair() -> tuple[socket.socket, socket.socket]:
    """Two connected sockets, every read on them bounded."""
    server, client = socket.socketpair()
    server.settimeout(5)
    client.settimeout(5)
    return server, client


def opened(port: int, path: str, **options) -> socket.socket:
    sock = connect(port)
    answer = wsclient.handshake(sock, path, **options)
    assert answer.status == 101, answer
    return sock


# --- handshake -----------------------------------------------------------------------------


def test_accept_value_of_the_rfc_example() -> None:
    assert wsclient.accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_verifies_the_accept_and_sends_extra_headers(port: int) -> None:
    extra = {"Origin": "http://127.0.0.1", "X-Sidecar-Secret": "s3cret", "Authorization": "B x"}
    with connect(port) as sock:
        answer = wsclient.handshake(sock, "/headers", host="example.test:8080", headers=extra)
        assert answer.status_line.startswith("HTTP/1.1 101 ")
        assert answer.headers["upgrade"].lower() == "websocket"
        # What the server got, sent back in its first frame (still in the socket).
        seen = json.loads(wsclient.read_frame(sock).payload)
    assert seen["Host"] == "example.test:8080"
    assert seen["Sec-WebSocket-Version"] == "13"
    for name, value in extra.items():
        assert seen[name] == value


def test_an_accept_for_another_key_is_refused(port: int) -> None:
    with connect(port) as sock:
        sent = wsclient.new_key()
        sock.sendall(wsclient.request("/echo", "127.0.0.1", sent))
        answer = wsclient.parse_head(wsclient.read_head(sock))
    assert answer.status == 101
    wsclient.check_accept(answer, sent)
    with pytest.raises(wsclient.HandshakeError, match="does not match"):
        wsclient.check_accept(answer, wsclient.new_key())


def test_a_101_with_a_wrong_accept_fails_the_handshake() -> None:
    server, client = pair()
    with server, client:
        wrong = wsclient.accept_for(wsclient.new_key())
        server.sendall(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {wrong}\r\n\r\n".encode()
        )
        with pytest.raises(wsclient.HandshakeError):
            wsclient.handshake(client, "/ws")


def test_a_refusal_is_returned_not_raised(port: int) -> None:
    with connect(port) as sock:
        answer = wsclient.handshake(sock, "/refused")
    assert answer.status == 403
    assert answer.status_line == "HTTP/1.1 403 Forbidden"


def test_the_head_is_read_and_not_a_byte_more() -> None:
    server, client = pair()
    with server, client:
        key = wsclient.new_key()
        head = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {wsclient.accept_for(key)}\r\n\r\n"
        )
        # The head and a first frame in one write, as a server may send them.
        server.sendall(head.encode() + b"\x81\x05hello")
        answer = wsclient.handshake(client, "/ws", key=key)
        assert answer.headers["sec-websocket-accept"] == wsclient.accept_for(key)
        assert wsclient.read_frame(client) == wsclient.Frame(True, wsclient.TEXT, b"hello")


def test_closed_during_the_handshake() -> None:
    server, client = pair()
    with client:
        server.sendall(b"HTTP/1.1 101 Switching")
        server.close()
        with pytest.raises(wsclient.ConnectionClosed, match="handshake"):
            wsclient.read_head(client)


def test_not_an_http_answer() -> None:
    with pytest.raises(wsclient.HandshakeError, match="not an HTTP answer"):
        wsclient.parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")


# --- frames --------------------------------------------------------------------------------


def test_masked_frame_of_the_rfc_example() -> None:
    # RFC 6455 5.7: a single-frame masked text message "Hello".
    frame = wsclient.encode_frame(wsclient.TEXT, b"Hello", mask=bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize(
    ("size", "length_bytes"),
    [(125, b"\xfd"), (126, b"\xfe\x00\x7e"), (65536, b"\xff" + struct.pack("!Q", 65536))],
)
def test_length_encodings(size: int, length_bytes: bytes) -> None:
    frame = wsclient.encode_frame(wsclient.BINARY, bytes(size))
    assert frame[0] == 0x82
    assert frame[1 : 1 + len(length_bytes)] == length_bytes  # the mask bit is set: 0x80 | length
    assert len(frame) == 1 + len(length_bytes) + 4 + size


@pytest.mark.parametrize("size", SIZES)
def test_masked_frames_decode_to_what_was_encoded(size: int) -> None:
    payload = bytes(i % 256 for i in range(size))
    server, client = pair()
    with server, client:
        sender = threading.Thread(
            target=client.sendall, args=(wsclient.encode_frame(0x2, payload),)
        )
        sender.start()
        frame = wsclient.read_frame(server)  # unmasked on the way, as the server would
        sender.join()
    assert frame == wsclient.Frame(True, wsclient.BINARY, payload)


@pytest.mark.parametrize("size", SIZES)
def test_echo_round_trip_of_every_length(port: int, size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # `size` bytes, not all ASCII
    data = bytes(i % 256 for i in range(size))
    with opened(port, "/echo") as sock:
        wsclient.send_text(sock, text)
        wsclient.send_frame(sock, wsclient.BINARY, data)
        assert wsclient.read_frame(sock) == (True, wsclient.TEXT, text.encode())
        assert wsclient.read_frame(sock) == (True, wsclient.BINARY, data)


def test_server_frames_of_all_three_lengths(port: int) -> None:
    with opened(port, "/big") as sock:
        sizes = [len(wsclient.read_frame(sock).payload) for _ in range(3)]
        assert sizes == [100, 1000, BIG]


def test_fragments_are_joined_around_a_ping() -> None:
    server, client = pair()
    with server, client:
        # Unmasked, as a server sends: "abc" (no FIN), a ping, "def" (FIN).
        server.sendall(b"\x01\x03abc" + b"\x89\x02hi" + b"\x80\x03def")
        assert wsclient.read_message(client) == (wsclient.TEXT, b"abcdef")
        assert wsclient.read_frame(server) == (True, wsclient.PONG, b"hi")


def test_closed_mid_frame() -> None:
    server, client = pair()
    with client:
        server.sendall(b"\x82\x7e\x01\x00" + bytes(10))  # 256 bytes announced, 10 sent
        server.close()
        with pytest.raises(wsclient.ConnectionClosed, match="mid-frame"):
            wsclient.read_frame(client)


# --- ping, pong, close ---------------------------------------------------------------------


def test_the_servers_ping_is_answered(port: int) -> None:
    with opened(port, "/ping") as sock:
        opcode, payload = wsclient.read_message(sock)  # answers the ping on the way
        assert opcode == wsclient.TEXT
        assert json.loads(payload) == {"type": int(WSMsgType.PONG), "data": "are you there"}
        wsclient.send_close(sock)
        assert wsclient.read_frame(sock).opcode == wsclient.CLOSE


def test_our_ping_gets_its_pong(port: int) -> None:
    with opened(port, "/echo") as sock:
        wsclient.send_ping(sock, b"ping 1")
        assert wsclient.read_frame(sock) == (True, wsclient.PONG, b"ping 1")


def test_close_handshake(port: int) -> None:
    with opened(port, "/echo") as sock:
        wsclient.send_close(sock, 1000, "done")
        frame = wsclient.read_frame(sock)
        assert frame.opcode == wsclient.CLOSE
        assert wsclient.close_code(frame.payload) == 1000


def test_close_frame_carries_code_and_reason() -> None:
    server, client = pair()
    with server, client:
        wsclient.send_close(client, 4000, "bye")
        frame = wsclient.read_frame(server)
    assert frame == (True, wsclient.CLOSE, struct.pack("!H", 4000) + b"bye")
    assert wsclient.close_code(frame.payload) == 4000
    assert wsclient.close_code(b"") is None


# --- the scripts, staged as in the containers ----------------------------------------------


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """probe.py, faults.py, browser.py and wsclient.py in a directory of their own, as
    molecule/conftest.py stages them in /opt/mws-test."""
    stage = tmp_path_factory.mktemp("mws-test")
    for name in ("probe.py", "faults.py", "browser.py", "wsclient.py"):
        shutil.copy(MOLECULE_DIR / name, stage)
    return stage


def run_probe(staged: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(staged / "probe.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_probe_sends_and_receives(staged: Path, port: int) -> None:
    answer = run_probe(staged, "ws", "/echo", "--port", str(port), "--send", "x" * 200)
    assert answer["handshake"] == "HTTP/1.1 101 Switching Protocols"
    assert [frame["data"] for frame in answer["frames"]] == ["x" * 200]
    assert set(answer) == {"handshake", "opened_at", "elapsed", "frames"}
    assert answer["opened_at"] <= answer["frames"][0]["at"]


def test_probe_sends_headers_and_basic_auth(staged: Path, port: int) -> None:
    args = ["--port", str(port), "--header", "Origin: http://evil.example", "--user", "a:b"]
    (frame,) = run_probe(staged, "ws", "/headers", *args)["frames"]
    assert frame["data"]["Origin"] == "http://evil.example"
    assert frame["data"]["Authorization"] == "Basic YTpi"


def test_probe_reports_a_refusal(staged: Path, port: int) -> None:
    answer = run_probe(staged, "ws", "/refused", "--port", str(port))
    assert answer == {"handshake": "HTTP/1.1 403 Forbidden", "frames": []}


@pytest.mark.parametrize("script", ["faults.py", "browser.py"])
def test_staged_scripts_find_the_client(staged: Path, script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(staged / script), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
