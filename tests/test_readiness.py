"""The readiness check: how it waits (plugins/modules/wait_for_sidecars.py),
against real listeners on this machine's loopback standing in for a sidecar
and for Apache. Where it looks is the plan's (tests/test_plan.py)."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins/modules"))

import wait_for_sidecars as waiting  # noqa: E402


class Front(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the server's `status` attribute, or when that is
    a function, with what it gives for the request's number (from 1): a test
    then changes the answer after so many polls, whatever the threads' pace.
    The paths asked for are kept in `paths`."""

    def do_GET(self) -> None:
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.paths.append(self.path)  # type: ignore[attr-defined]
            status = server.status  # type: ignore[attr-defined]
            if callable(status):
                status = status(len(server.paths))  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def front() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    server.status = 200  # type: ignore[attr-defined]
    server.paths = []  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def checks(front, listener_port: int, path: str = "/metrics/") -> tuple[list, dict]:
    where = {
        "host": "127.0.0.1",
        "port": front.server_address[1],
        "tls": False,
        "host_header": "127.0.0.1",
    }
    sidecars = [
        {
            "name": "metrics-sidecar",
            "listener": {"host": "127.0.0.1", "port": listener_port},
            "front": {**where, "path": path},
        }
    ]
    return sidecars, {**where, "path": "/"}


def test_all_serving_ends_the_wait_at_once(front, listener) -> None:
    sidecars, app = checks(front, listener.getsockname()[1])
    assert waiting.wait(sidecars, app, timeout=5) == {}
    assert front.paths == ["/metrics/", "/"]  # one poll: the sidecar's path and the app's


def test_access_refused_by_apache_still_counts_as_serving(front, listener) -> None:
    front.status = 403
    sidecars, app = checks(front, listener.getsockname()[1])
    assert waiting.wait(sidecars, app, timeout=2) == {}


def test_a_gateway_error_names_the_sidecar(front, listener) -> None:
    front.status = 503
    sidecars, app = checks(front, listener.getsockname()[1])
    problems = waiting.wait(sidecars, app, timeout=0.5, interval=0.1)
    assert set(problems) == {"metrics-sidecar", "the WSGI application"}
    assert "answers 503" in problems["metrics-sidecar"]


def test_a_closed_listener_names_the_sidecar(front) -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    sidecars, app = checks(front, port)
    problems = waiting.wait(sidecars, app, timeout=0.5, interval=0.1)
    assert list(problems) == ["metrics-sidecar"]
    assert f"127.0.0.1:{port} does not accept" in problems["metrics-sidecar"]


def test_waits_for_a_sidecar_that_comes_up_late(front) -> None:
    # Bound but not listening, it refuses connections until the fifth poll
    # (counted by the app's GETs, the one request of a poll while the sidecar
    # refuses) makes it listen.
    with socket.socket() as late:
        late.bind(("127.0.0.1", 0))

        def status(request: int) -> int:
            if request == 5:
                late.listen()
            return 200

        front.status = status
        sidecars, app = checks(front, late.getsockname()[1])
        assert waiting.wait(sidecars, app, timeout=30, interval=0.1) == {}
    # Five polls waited through, and it ended at the first that found it up.
    assert front.paths == ["/"] * 5 + ["/metrics/", "/"]


def test_settle_outlasts_an_old_process_that_goes_away(front, listener) -> None:
    # Serving for three polls (the old process), then a gap of six, counted in
    # requests (two a poll): the wait must not end before SETTLE seconds of
    # uninterrupted serving from the first answer after the gap.
    back: list[float] = []

    def status(request: int) -> int:
        if request <= 6:
            return 200
        if request <= 18:
            return 503
        if not back:
            back.append(time.monotonic())
        return 200

    front.status = status
    sidecars, app = checks(front, listener.getsockname()[1])
    assert waiting.wait(sidecars, app, timeout=30, settle=1.0, interval=0.1) == {}
    assert back, "the wait ended before the gap"
    assert time.monotonic() - back[0] >= 1.0


def test_log_excerpt_starts_at_the_last_line_naming_the_sidecar(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text(
        "old line about echo\nnoise\n"
        "mod_wsgi_ws_sidecar: sidecar echo: /srv/echo.py failed\n"
        "Traceback (most recent call last):\nRuntimeError: boom\n"
    )
    excerpt = waiting.log_excerpt(str(log), ["echo"])
    assert excerpt.splitlines() == [
        "mod_wsgi_ws_sidecar: sidecar echo: /srv/echo.py failed",
        "Traceback (most recent call last):",
        "RuntimeError: boom",
    ]
    assert "cannot read" in waiting.log_excerpt(str(tmp_path / "absent.log"), ["echo"])


THREAD_LINE = (
    "[Sun Dec 06 07:58:02.424522 2026] [mpm_event:alert] [pid 21970:tid 21970] (11)Resource"
    " temporarily unavailable: AH00480: ap_thread_create: unable to create worker thread\n"
)


def test_thread_failures_are_read_from_where_the_run_began(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("an old failure\n" + THREAD_LINE)
    before = log.stat().st_size
    assert waiting.thread_failures(str(log), before) == []  # an earlier run's
    with log.open("a") as out:
        out.write("[...] AH00489: Apache configured -- resuming normal operations\n")
        out.write(THREAD_LINE * 2)
    assert waiting.thread_failures(str(log), before) == [THREAD_LINE.rstrip()] * 2
    # Rotated since (shorter than where it stood): all of it is this run's.
    log.write_text(THREAD_LINE)
    assert len(waiting.thread_failures(str(log), before)) == 1
    assert waiting.thread_failures(str(tmp_path / "missing.log"), 0) == []
