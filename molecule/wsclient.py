"""The tests' WebSocket client (RFC 6455): handshake, frames, ping, pong and close.

Standard library only (Python 3.11+): it runs on the controller (tests/) and inside
the containers under test, staged beside probe.py, faults.py and browser.py, where it
must lean on nothing the deployment installed.

Reads take exactly the bytes asked for and nothing is buffered here: after
`handshake` the first frame is still in the socket, so a caller may select() on the
socket between frames, or stop reading on purpose (a stalled client).

    sock = socket.create_connection(("127.0.0.1", 80), 5)
    answer = handshake(sock, "/metrics/ws", headers={"Origin": "http://127.0.0.1"})
    if answer.status == 101:
        frame = read_frame(sock)
"""

import base64
import hashlib
import os
import socket
import struct
from typing import NamedTuple

# Opcodes (RFC 6455 5.2).
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# Appended to the key to compute Sec-WebSocket-Accept (RFC 6455 1.3).
ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# An answer head longer than this is not a WebSocket server's.
MAX_HEAD = 64 * 1024


class ConnectionClosed(ConnectionError):
    """The peer closed the connection before what was being read was complete."""


class HandshakeError(ConnectionError):
    """An answer that is not a valid WebSocket handshake."""


class Response(NamedTuple):
    status_line: str  # as sent, e.g. "HTTP/1.1 101 Switching Protocols"
    status: int
    headers: dict[str, str]  # names in lower case; repeated headers joined with ", "


class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes  # unmasked


# --- handshake -----------------------------------------------------------------------------


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer `key` with."""
    digest = hashlib.sha1((key + ACCEPT_GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def request(path: str, host: str, key: str, headers: dict[str, str] | None = None) -> bytes:
    """The upgrade request; `headers` (Origin, a secret, Authorization...) go after ours."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: socket.socket) -> bytes:
    """The answer's status line and headers, through the blank line that ends them."""
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        # One byte at a time, so that not a byte of the first frame is taken.
        byte = sock.recv(1)
        if not byte:
            raise ConnectionClosed("closed during the handshake")
        head += byte
        if len(head) > MAX_HEAD:
            raise HandshakeError(f"answer head longer than {MAX_HEAD} bytes")
    return bytes(head)


def parse_head(head: bytes) -> Response:
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HandshakeError(f"not an HTTP answer: {status_line!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError(f"malformed header line: {line!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Response(status_line, int(parts[1]), headers)


def check_accept(response: Response, key: str) -> None:
    """Raises HandshakeError unless the answer's Sec-WebSocket-Accept is the one for `key`."""
    got = response.headers.get("sec-websocket-accept")
    if got != accept_for(key):
        raise HandshakeError(f"Sec-WebSocket-Accept {got!r} does not match the key sent")


def handshake(
    sock: socket.socket,
    path: str,
    host: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    key: str | None = None,
) -> Response:
    """Sends the upgrade request on a connected socket and reads the answer's head.

    Any answer is returned, a refusal (403, 502...) too: callers decide what it means.
    A 101 must carry the right Sec-WebSocket-Accept, or HandshakeError is raised.
    """
    key = key or new_key()
    sock.sendall(request(path, host, key, headers))
    response = parse_head(read_head(sock))
    if response.status == 101:
        check_accept(response, key)
    return response


# --- frames --------------------------------------------------------------------------------


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """`data` XORed with the 4-byte `mask` repeated (masking and unmasking alike)."""
    size = len(data)
    # One big-integer XOR instead of a Python loop: fast for megabytes too.
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def encode_frame(
    opcode: int, payload: bytes = b"", fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame as a client sends it: masked (RFC 6455 5.3), with a 7-, 16- or 64-bit length.

    `mask` is random unless given (tests give one to compare bytes).
    """
    mask = os.urandom(4) if mask is None else mask
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + mask + apply_mask(payload, mask)


def read_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly `n` bytes from the socket, or ConnectionClosed."""
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        count = sock.recv_into(view[got:])
        if not count:
            raise ConnectionClosed("connection closed mid-frame")
        got += count
    return bytes(buffer)


def read_frame(sock: socket.socket) -> Frame:
    """The next frame from the socket, of any length, unmasked."""
    first, second = read_exact(sock, 2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", read_exact(sock, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", read_exact(sock, 8))
    # Servers never mask; should one do so, unmask rather than return garbage.
    mask = read_exact(sock, 4) if second & 0x80 else None
    payload = read_exact(sock, size)
    if mask:
        payload = apply_mask(payload, mask)
    return Frame(bool(first & 0x80), first & 0x0F, payload)


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    """The next whole message: (TEXT or BINARY, its fragments joined), or (CLOSE, payload).

    Pings met on the way are answered, pongs and unknown opcodes skipped.
    """
    kind, parts = CONTINUATION, []  # stays CONTINUATION only for a stray continuation frame
    while True:
        frame = read_frame(sock)
        if frame.opcode == PING:
            send_pong(sock, frame.payload)
        elif frame.opcode == CLOSE:
            return CLOSE, frame.payload
        elif frame.opcode in (TEXT, BINARY, CONTINUATION):
            # Control frames may come between fragments (RFC 6455 5.4).
            if frame.opcode != CONTINUATION:
                kind, parts = frame.opcode, []
            parts.append(frame.payload)
            if frame.fin:
                return kind, b"".join(parts)


def send_frame(sock: socket.socket, opcode: int, payload: bytes = b"") -> None:
    sock.sendall(encode_frame(opcode, payload))


def send_text(sock: socket.socket, text: str) -> None:
    send_frame(sock, TEXT, text.encode())


def send_ping(sock: socket.socket, payload: bytes = b"") -> None:
    send_frame(sock, PING, payload)


def send_pong(sock: socket.socket, payload: bytes = b"") -> None:
    """The answer to a ping: its payload sent back (RFC 6455 5.5.3)."""
    send_frame(sock, PONG, payload)


def send_close(sock: socket.socket, code: int = 1000, reason: str = "") -> None:
    send_frame(sock, CLOSE, struct.pack("!H", code) + reason.encode())


def close_code(payload: bytes) -> int | None:
    """The status code a close frame carries, or None if it carries none."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
