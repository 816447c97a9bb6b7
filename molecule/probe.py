"""HTTP and WebSocket probe the tests run *inside* a container under test.

Standard library only, so it checks the deployment without leaning on what
the deployment installed. Every call is bounded in time. Prints one JSON
document on stdout.

    python3 probe.py http PATH [--host-header H] [--port P]
    python3 probe.py ws PATH [--frames N] [--timeout S] [--port P]
"""

import argparse
import base64
import http.client
import json
import os
import socket
import struct
import sys
import time


def http_get(path: str, port: int, host_header: str | None, timeout: float) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Host": host_header} if host_header else {}
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    return {"status": resp.status, "headers": dict(resp.getheaders()), "body": body}


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    first, second = read_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exact(sock, 8))[0]
    if second & 0x80:
        read_exact(sock, 4)  # servers never mask, but be tolerant
    return first & 0x0F, read_exact(sock, length)


def send_frame(sock: socket.socket, opcode: int, payload: bytes) -> None:
    # Clients must mask their frames (RFC 6455 5.3); payloads here are tiny.
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)


def websocket(path: str, port: int, host_header: str | None, frames: int, timeout: float) -> dict:
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header or '127.0.0.1'}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode()
    if " 101 " not in status_line + " ":
        return {"handshake": status_line, "frames": []}
    received = []
    while len(received) < frames:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"only {len(received)} of {frames} frames in {timeout} s")
        opcode, payload = read_frame(sock)
        if opcode == 0x9:  # ping: answer so heartbeats do not drop us
            send_frame(sock, 0xA, payload)
        elif opcode == 0x1:
            received.append({"at": time.time(), "data": json.loads(payload)})
        elif opcode == 0x8:
            break
    send_frame(sock, 0x8, struct.pack("!H", 1000))
    sock.close()
    return {
        "handshake": status_line,
        "elapsed": time.monotonic() - started,
        "frames": received,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["http", "ws"])
    parser.add_argument("path")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--host-header")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    if args.kind == "http":
        result = http_get(args.path, args.port, args.host_header, args.timeout)
    else:
        result = websocket(args.path, args.port, args.host_header, args.frames, args.timeout)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
