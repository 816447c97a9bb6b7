"""A lean WebSocket client for the push benchmark's subscribers (standard
library only, as staged in the container next to push_bench.py).

The benchmark measures the servers, but its 10,000 subscribers share their
2 cores: on aiohttp's client they used more CPU than Apache and the push
sidecar together, and so delayed what they measured. This client does only
what a subscriber needs: the opening handshake, the server's unmasked
frames (text, ping, close), masked text and pong frames of its own. Both
targets' subscribers use it, Socket.IO's speaking Engine.IO over it.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
HANDSHAKE_TIMEOUT = 30.0


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame (RFC 6455 5.3: a client masks every frame)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + mask + masked


class LeanWebSocket(asyncio.Protocol):
    """One client connection; `on_text(socket, text)` gets every text message."""

    def __init__(self, host: str, path: str, on_text: Callable[[LeanWebSocket, str], None]):
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n"
        ).encode()
        self._on_text = on_text
        self._buffer = bytearray()
        self._open = False
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # --- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._open and not self._read_response():
            return
        self._read_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # --- sending -------------------------------------------------------------
    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(TEXT, text.encode()))

    def close(self) -> None:
        # A handshake given up on is cancelled, not left to fail unheard.
        if not self.opened.done():
            self.opened.cancel()
        if self.transport is not None:
            self.transport.abort()

    # --- reading -------------------------------------------------------------
    def _read_response(self) -> bool:
        """The handshake's response: True once it is read and was a 101."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        status = bytes(self._buffer[: self._buffer.find(b"\r\n")])
        del self._buffer[: end + 4]
        if status.split(b" ")[1:2] != [b"101"]:
            self.opened.set_exception(ConnectionError(f"handshake refused: {status!r}"))
            self.close()
            return False
        self._open = True
        self.opened.set_result(None)
        return True

    def _read_frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            opcode, size, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start : start + size])
            final = buffer[0] & 0x80
            del buffer[: start + size]
            if not final:
                # Neither server sends fragments: a subscriber that met one
                # goes, and the benchmark counts what it then misses as lost.
                self.close()
                return
            if opcode == TEXT:
                self._on_text(self, payload.decode())
            elif opcode == PING:
                self.transport.write(client_frame(PONG, payload))
            elif opcode == CLOSE:
                self.close()
                return


async def connect(
    host: str, port: int, path: str, on_text: Callable[[LeanWebSocket, str], None]
) -> LeanWebSocket:
    """An open WebSocket to ws://host:port/path, within HANDSHAKE_TIMEOUT."""
    loop = asyncio.get_running_loop()
    _transport, socket = await asyncio.wait_for(
        loop.create_connection(lambda: LeanWebSocket(host, path, on_text), host, port),
        HANDSHAKE_TIMEOUT,
    )
    try:
        await asyncio.wait_for(asyncio.shield(socket.opened), HANDSHAKE_TIMEOUT)
    except BaseException:
        socket.close()
        raise
    return socket
