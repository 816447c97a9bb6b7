"""Headless Chromium driven over the DevTools protocol, run *inside* a container under test.

Standard library only, like probe.py, with wsclient.py staged beside it as its
WebSocket client. Chromium (Debian's package) is started with a throwaway profile, no
route off the host (every host name but 127.0.0.1 fails to resolve) and DevTools on a
loopback port of its own choosing; one tab then runs the given steps in order. Every
wait is bounded, and Chromium's whole process group is killed at the end, whatever
happened. Prints one JSON document on stdout.

    python3 /opt/mws-test/browser.py STEPS_JSON   (wsclient.py in the same directory)

STEPS_JSON is a list of steps, each an object naming what to "do":

    {"do": "navigate", "url": U, "timeout": S}  load U; wait for its load event
    {"do": "eval", "expr": JS}                  the value of JS (promises awaited)
    {"do": "wait", "expr": JS, "timeout": S}    JS every 0.1 s until truthy: {"ok", "value"}
    {"do": "sleep", "seconds": S}               let the page run
    {"do": "run", "argv": [...], "timeout": S}  a command, e.g. restarting Apache
    {"do": "hold", "path": P, "seconds": S}     a WebSocket upgrade to P through Apache
                                                (port 80), held open S seconds
    {"do": "traffic", "url": U, "seconds": S}   GETs to U, one after another, for S seconds
    {"do": "screenshot"}                        PNG of the viewport, base64

Each step's result carries what it did, when it started ("at", epoch seconds) and its
"elapsed" seconds.
Whatever the steps, JavaScript dialogs (alert, confirm, prompt) are recorded and
dismissed, and uncaught exceptions in the page are recorded:

    {"browser": "Chrome/...", "steps": [...], "dialogs": [...], "exceptions": [...]}
"""

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import wsclient

VIEWPORT = (1280, 800)
CALL_TIMEOUT = 15.0  # one DevTools command
LAUNCH_TIMEOUT = 30.0  # Chromium up and its DevTools port known
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BrowserError(Exception):
    pass


# --- the DevTools connection: a WebSocket (wsclient.py) -------------------------------------


class DevTools:
    """One DevTools session on a page target; events are handled while waiting."""

    def __init__(self, ws_url: str):
        url = urllib.parse.urlsplit(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), CALL_TIMEOUT)
        try:
            answer = wsclient.handshake(self.sock, url.path, host=url.netloc)
        except wsclient.ConnectionClosed as exc:
            raise BrowserError("DevTools closed during the handshake") from exc
        if answer.status != 101:
            raise BrowserError(f"DevTools handshake refused: {answer.status_line!r}")
        self.next_id = 0
        self.dialogs: list[dict] = []
        self.exceptions: list[str] = []
        self.loaded = False

    def _message(self, wait: float) -> dict | None:
        """The next JSON message, or None if none starts within `wait` seconds."""
        # wsclient buffers nothing, so what select() sees is all there is.
        if not select.select([self.sock], [], [], max(0.0, wait))[0]:
            return None
        try:
            opcode, payload = wsclient.read_message(self.sock)  # pings answered on the way
        except wsclient.ConnectionClosed as exc:
            raise BrowserError("DevTools connection closed") from exc
        if opcode == wsclient.CLOSE:
            raise BrowserError("DevTools sent close")
        return json.loads(payload)

    def _event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Page.javascriptDialogOpening":
            self.dialogs.append(
                {"type": params.get("type"), "message": params.get("message"), "at": time.time()}
            )
            self.send("Page.handleJavaScriptDialog", {"accept": False})
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.exceptions.append(str(text))
        elif method == "Page.loadEventFired":
            self.loaded = True

    def send(self, method: str, params: dict | None = None) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        wsclient.send_text(self.sock, json.dumps(message))
        return self.next_id

    def call(self, method: str, params: dict | None = None, timeout: float = CALL_TIMEOUT):
        wanted = self.send(method, params)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"{method}: no answer within {timeout} s")
            message = self._message(remaining)
            if message is None:
                continue
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._event(message)

    def pump(self, seconds: float) -> None:
        """Handle events (dialogs above all) for `seconds`."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            message = self._message(remaining)
            if message is not None and "method" in message:
                self._event(message)


# --- Chromium ------------------------------------------------------------------------------


def launch(workdir: str, chromium: str) -> tuple[subprocess.Popen, int]:
    profile = os.path.join(workdir, "profile")
    log = open(os.path.join(workdir, "chromium.log"), "wb")  # noqa: SIM115 (kept for its life)
    proc = subprocess.Popen(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",  # root in a container
            "--disable-dev-shm-usage",  # Docker's /dev/shm is 64 MB
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",  # any free port, written to DevToolsActivePort
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--mute-audio",
            # Nothing but loopback: any other host name fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "about:blank",
        ],
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": workdir},  # its temporary files go with the workdir
        stdout=log,
        stderr=log,
        start_new_session=True,  # its own process group: killed as a whole at the end
    )
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserError(f"chromium exited with {proc.returncode}: {tail(workdir)}")
        try:
            with open(port_file) as fh:
                port = fh.readline().strip()
            if port.isdigit():
                return proc, int(port)
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    raise BrowserError(f"no DevTools port within {LAUNCH_TIMEOUT} s: {tail(workdir)}")


def tail(workdir: str) -> str:
    try:
        with open(os.path.join(workdir, "chromium.log"), "rb") as fh:
            return fh.read()[-2000:].decode("utf-8", "replace")
    except OSError:
        return ""


def kill(proc: subprocess.Popen) -> None:
    """SIGTERM to Chromium's whole process group, then SIGKILL to whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    # Helpers (renderer, GPU, zygote) that outlived the browser share its group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def devtools_json(port: str | int, path: str) -> object:
    with NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.load(resp)


def page_target(port: int) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pages = [t for t in devtools_json(port, "/json/list") if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise BrowserError("Chromium opened no page within 10 s")


# --- steps ---------------------------------------------------------------------------------


class Session:
    def __init__(self, tab: DevTools):
        self.tab = tab
        self.threads: list[threading.Thread] = []

    def evaluate(self, expr: str, timeout: float = CALL_TIMEOUT):
        result = self.tab.call(
            "Runtime.evaluate",
            {"expression": expr, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"evaluating {expr[:80]!r}: {text}")
        return result["result"].get("value")

    def navigate(self, url: str, timeout: float = 20) -> dict:
        self.tab.loaded = False
        answer = self.tab.call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            return {"ok": False, "error": answer["errorText"]}
        deadline = time.monotonic() + timeout
        while not self.tab.loaded and time.monotonic() < deadline:
            self.tab.pump(min(0.1, max(0.0, deadline - time.monotonic())))
        return {"ok": self.tab.loaded, "url": self.evaluate("location.href")}

    def wait(self, expr: str, timeout: float = 10) -> dict:
        started = time.monotonic()
        value = None
        while True:
            value = self.evaluate(expr)
            elapsed = time.monotonic() - started
            if value or elapsed > timeout:
                return {"ok": bool(value), "value": value, "elapsed": round(elapsed, 3)}
            self.tab.pump(0.1)

    def run(self, argv: list[str], timeout: float = 60) -> dict:
        started = time.time()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"rc": None, "error": f"timed out after {timeout} s", "started": started}
        return {
            "rc": done.returncode,
            "stdout": done.stdout[-2000:],
            "stderr": done.stderr[-2000:],
            "started": started,
            "finished": time.time(),
        }

    def hold(self, path: str, seconds: float, port: int = 80) -> dict:
        sock = socket.create_connection(("127.0.0.1", port), 5)
        try:
            status = wsclient.handshake(sock, path).status_line
        except wsclient.ConnectionClosed:
            status = ""  # closed unanswered: reported, the steps go on
        thread = threading.Thread(target=drain, args=(sock, time.monotonic() + seconds))
        thread.start()
        self.threads.append(thread)
        return {"status": status}

    def traffic(self, url: str, seconds: float) -> dict:
        thread = threading.Thread(target=fetch_loop, args=(url, time.monotonic() + seconds))
        thread.start()
        self.threads.append(thread)
        return {"started": True}

    def screenshot(self) -> dict:
        shot = self.tab.call("Page.captureScreenshot", {"format": "png"})
        return {"png_base64": shot["data"]}

    def step(self, step: dict) -> dict:
        kind = step["do"]
        at = time.time()
        started = time.monotonic()
        if kind == "navigate":
            result = self.navigate(step["url"], step.get("timeout", 20))
        elif kind == "eval":
            result = {"value": self.evaluate(step["expr"])}
        elif kind == "wait":
            result = self.wait(step["expr"], step.get("timeout", 10))
        elif kind == "sleep":
            self.tab.pump(step["seconds"])
            result = {}
        elif kind == "run":
            result = self.run(step["argv"], step.get("timeout", 60))
        elif kind == "hold":
            result = self.hold(step["path"], step["seconds"], step.get("port", 80))
        elif kind == "traffic":
            result = self.traffic(step["url"], step["seconds"])
        elif kind == "screenshot":
            result = self.screenshot()
        else:
            raise BrowserError(f"unknown step {kind!r}")
        return {"do": kind, "at": at, "elapsed": round(time.monotonic() - started, 3), **result}

    def close(self) -> None:
        for thread in self.threads:  # each ends by its own deadline
            thread.join(60)


def drain(sock: socket.socket, deadline: float) -> None:
    """Reads and discards what the server sends, until the deadline; then closes."""
    sock.settimeout(0.2)
    try:
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    break
            except TimeoutError:
                continue
    except OSError:
        pass
    finally:
        sock.close()


def fetch_loop(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with NO_PROXY.open(url, timeout=2) as resp:
                resp.read()
        except OSError:
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("steps", help="JSON list of steps")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    steps = json.loads(args.steps)
    # `timeout` (or anyone) ending this script still ends Chromium: see the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{sys.argv[0]}: terminated"))
    workdir = tempfile.mkdtemp(prefix="mws-browser-")
    report: dict = {"steps": []}
    proc = None
    session = None
    try:
        proc, port = launch(workdir, args.chromium)
        report["browser"] = devtools_json(port, "/json/version").get("Browser")
        tab = DevTools(page_target(port))
        session = Session(tab)
        tab.call("Page.enable")
        tab.call("Runtime.enable")
        width, height = VIEWPORT
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        for step in steps:
            report["steps"].append(session.step(step))
        report["dialogs"], report["exceptions"] = tab.dialogs, tab.exceptions
    except (BrowserError, OSError, ValueError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["chromium_log"] = tail(workdir)
    finally:
        if proc is not None:
            kill(proc)
        if session is not None:
            session.close()
        shutil.rmtree(workdir, ignore_errors=True)
    json.dump(report, sys.stdout)
    return 1 if "error" in report else 0


if __name__ == "__main__":
    sys.exit(main())
