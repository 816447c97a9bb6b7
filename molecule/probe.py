"""HTTP and WebSocket probe the tests run *inside* a container under test.

Standard library only, so it checks the deployment without leaning on what
the deployment installed; its WebSocket client is wsclient.py, staged beside
it. Every call is bounded in time. Prints one JSON document on stdout.

    python3 probe.py http PATH [--host-header H] [--header "N: V"] [--port P] [--tls --cafile F]
    python3 probe.py ws PATH [--frames N] [--timeout S] [--send TEXT] [--idle S] ...
    python3 probe.py stall PATH [--timeout S] ...   POST whose body never comes:
                                                   how long until Apache gives up
    python3 probe.py unix-connect SOCKET            can this user connect at all?

--user NAME:PASSWORD sends HTTP basic auth, with http and ws alike.
--source 127.0.0.2 connects from another loopback address, which Apache's
`Require ip 127.0.0.1` does not match: a stand-in for a remote client.
With --tls the connection is HTTPS to port 443 by default, verified against
--cafile, with the Host header (or 127.0.0.1) as the TLS server name.
"""

import argparse
import base64
import http.client
import json
import socket
import ssl
import sys
import time

import wsclient  # staged beside this file


def connect(args) -> socket.socket:
    if args.unix:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(args.timeout)
        sock.connect(args.unix)
        return sock
    source = (args.source, 0) if args.source else None
    sock = socket.create_connection(("127.0.0.1", args.port), args.timeout, source)
    if not args.tls:
        return sock
    context = ssl.create_default_context(cafile=args.cafile)
    if args.tls_only:
        # Offer exactly this version, even one the system policy forbids, to
        # see what the server accepts.
        version = ssl.TLSVersion[args.tls_only]
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = context.maximum_version = version
    return context.wrap_socket(sock, server_hostname=args.host_header or "127.0.0.1")


def http_get(args) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
    try:
        conn.sock = connect(args)
    except ssl.SSLError as exc:
        return {"tls_error": exc.reason or str(exc)}
    headers = request_headers(args)
    if args.host_header:
        headers["Host"] = args.host_header
    tls_version = conn.sock.version() if args.tls else None
    conn.request("GET", args.path, headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    result = {"status": resp.status, "headers": dict(resp.getheaders()), "body": body}
    if tls_version:
        result["tls_version"] = tls_version
    return result


def decode(payload: bytes):
    text = payload.decode("utf-8")
    try:
        return json.loads(text)
    except ValueError:
        return text


def request_headers(args) -> dict:
    """--header "N: V" lines, and --user NAME:PASSWORD as HTTP basic auth."""
    headers = dict(header.split(": ", 1) for header in args.header)
    if args.user:
        headers["Authorization"] = "Basic " + base64.b64encode(args.user.encode()).decode()
    return headers


def websocket(args) -> dict:
    started = time.monotonic()
    sock = connect(args)
    answer = wsclient.handshake(
        sock, args.path, args.host_header or "127.0.0.1", request_headers(args)
    )
    if answer.status != 101:
        return {"handshake": answer.status_line, "frames": []}
    opened_at = time.time()
    if args.idle:
        # Silent on both sides: only the proxy's idle timeout can end this.
        time.sleep(args.idle)
    if args.send is not None:
        wsclient.send_text(sock, args.send)
    received = []
    while len(received) < args.frames:
        if time.monotonic() - started > args.timeout:
            raise TimeoutError(f"only {len(received)} of {args.frames} frames in {args.timeout} s")
        frame = wsclient.read_frame(sock)
        if frame.opcode == wsclient.PING:  # answer, so heartbeats do not drop us
            wsclient.send_pong(sock, frame.payload)
        elif frame.opcode == wsclient.TEXT:
            received.append({"at": time.time(), "data": decode(frame.payload)})
        elif frame.opcode == wsclient.CLOSE:
            break
    wsclient.send_close(sock)
    sock.close()
    return {
        "handshake": answer.status_line,
        "opened_at": opened_at,
        "elapsed": time.monotonic() - started,
        "frames": received,
    }


def stall(args) -> dict:
    """Sends a POST's headers but never its body, and times how long Apache
    waits before answering or closing."""
    started = time.monotonic()
    sock = connect(args)
    sock.sendall(
        f"POST {args.path} HTTP/1.1\r\nHost: {args.host_header or '127.0.0.1'}\r\n"
        "Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n".encode()
    )
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except TimeoutError:
        return {"closed": False, "elapsed": time.monotonic() - started}
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    return {"closed": True, "elapsed": time.monotonic() - started, "status_line": status}


def unix_connect(args) -> dict:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(args.timeout)
    try:
        sock.connect(args.path)
    except OSError as exc:
        return {"connected": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        sock.close()
    return {"connected": True}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["http", "ws", "stall", "unix-connect"])
    parser.add_argument("path")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host-header")
    parser.add_argument("--header", action="append", default=[], help='"Name: value"')
    parser.add_argument("--user", help="NAME:PASSWORD for HTTP basic auth")
    parser.add_argument("--source", help="local address to connect from, e.g. 127.0.0.2")
    parser.add_argument("--unix", help="connect to this unix socket instead of a TCP port")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--cafile")
    parser.add_argument("--tls-only", help="offer only this TLS version, e.g. TLSv1_1")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--send")
    parser.add_argument("--idle", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    if args.port is None:
        args.port = 443 if args.tls else 80
    kinds = {"http": http_get, "ws": websocket, "stall": stall, "unix-connect": unix_connect}
    json.dump(kinds[args.kind](args), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
