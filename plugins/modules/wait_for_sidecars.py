"""Waits until the WSGI application and every sidecar serve, or says which does not."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_sidecars
short_description: Wait until the WSGI application and every WebSocket sidecar serve
description:
  - Run on the web host after Apache was (re)loaded. Polls, on the host's own
    addresses, until every sidecar accepts on its listener and Apache answers
    at its mount or virtual host with anything but a gateway error (502, 503,
    504), and Apache answers at the application's mount below 500.
  - Fails naming each sidecar that is not serving when the time is up, with
    the last lines of Apache's error log that mention it.
  - Fails too when Apache logged, after I(error_log_offset), that it could not
    start a worker thread (AH00480); the site answers, but with fewer threads
    than the planned load needs, so WebSockets past them would hang.
  - Reads only; never reports a change.
options:
  sidecars:
    description:
      - One item per sidecar, C(name), C(listener) (C(host) and C(port), or
        C(path) of a unix socket) and C(front) (how Apache serves it, as for I(app)).
    type: list
    elements: dict
    required: true
  app:
    description:
      - Where Apache serves the application, C(host), C(port), C(tls),
        C(host_header) and C(path).
    type: dict
    required: true
  timeout:
    description: Seconds to wait in all.
    type: float
    default: 60
  settle:
    description:
      - Seconds everything must keep serving, without a gap, before the wait
        ends; after a reload this outlasts the old processes.
    type: float
    default: 0
  error_log:
    description: Apache's error log, quoted from when a sidecar does not serve.
    type: path
    required: true
  error_log_offset:
    description: Where the error log stood before this run (bytes); what follows is this run's.
    type: int
    default: 0
author: mod_wsgi_ws_sidecar maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Wait until the application and its sidecar serve through Apache
  mod_wsgi_ws_sidecar.apache.wait_for_sidecars:
    sidecars:
      - name: metrics
        listener: {host: 127.0.0.1, port: 8765}
        front: {host: 127.0.0.1, port: 80, tls: false, host_header: www.example.com, path: /ws/}
    app: {host: 127.0.0.1, port: 80, tls: false, host_header: www.example.com, path: /}
    timeout: 60
    settle: 3
    error_log: /var/log/apache2/error.log
"""

RETURN = r"""
waited:
  description: Seconds until everything served.
  type: float
  returned: success
"""


import http.client
import socket
import ssl
import time
from collections import deque

from ansible.module_utils.basic import AnsibleModule

GATEWAY_ERRORS = {502, 503, 504}
# mpm_event's "ap_thread_create: unable to create worker thread".
THREAD_FAILURE = "AH00480"
PROBE_TIMEOUT = 3.0


def listener_accepts(listener: dict) -> str:
    """'' when the sidecar's own listener accepts a connection, else why not."""
    try:
        if listener.get("path"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(PROBE_TIMEOUT)
                sock.connect(listener["path"])
        else:
            socket.create_connection((listener["host"], listener["port"]), PROBE_TIMEOUT).close()
    except OSError as exc:
        where = listener.get("path") or f"{listener['host']}:{listener['port']}"
        return f"its listener {where} does not accept ({exc.strerror or exc})"
    return ""


def front_status(front: dict) -> int | str:
    """Apache's status for a GET at FRONT, or why there was none."""
    if front.get("tls"):
        context = ssl.create_default_context()
        # The host's own Apache on its own address: a readiness probe, not a
        # check of the certificate (the operator's clients do that).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            front["host"], front["port"], timeout=PROBE_TIMEOUT, context=context
        )
    else:
        conn = http.client.HTTPConnection(front["host"], front["port"], timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", front["path"], headers={"Host": front["host_header"]})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"no answer ({exc})"
    finally:
        conn.close()


def sidecar_problem(sidecar: dict) -> str:
    """'' when the sidecar serves, else what is wrong."""
    problem = listener_accepts(sidecar["listener"])
    if problem:
        return problem
    status = front_status(sidecar["front"])
    if isinstance(status, str) or status in GATEWAY_ERRORS:
        front = sidecar["front"]
        return f"Apache at {front['host_header']}{front['path']} answers {status}"
    return ""


def app_problem(app: dict) -> str:
    status = front_status(app)
    if isinstance(status, str) or status >= 500:
        return f"Apache at {app['host_header']}{app['path']} answers {status}"
    return ""


def wait(
    sidecars: list, app: dict, timeout: float, settle: float = 0.0, interval: float = 0.25
) -> dict[str, str]:
    """Polls until all have served for SETTLE seconds in a row, or TIMEOUT
    passes; returns what does not serve (empty when all do).

    Right after a graceful reload the old sidecar processes may answer for a
    moment before they exit and the new ones bind: SETTLE outlasts that gap.
    """
    deadline = time.monotonic() + timeout
    serving_since = None
    while True:
        problems = {s["name"]: sidecar_problem(s) for s in sidecars}
        problems["the WSGI application"] = app_problem(app)
        problems = {name: why for name, why in problems.items() if why}
        now = time.monotonic()
        if problems:
            serving_since = None
        elif serving_since is None:
            serving_since = now
        if (serving_since is not None and now - serving_since >= settle) or now >= deadline:
            return problems
        time.sleep(interval)


def log_excerpt(path: str, names: list, lines: int = 30) -> str:
    """The error log from the last failure report of one of NAMES (the
    runner's "sidecar NAME:" line, else any line naming it), at most LINES
    lines, so that its traceback follows; else the log's last lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            tail = list(deque(log, maxlen=2000))
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    start = len(tail) - lines // 2
    for needles in ([f"sidecar {name}:" for name in names], names):
        found = [i for i, line in enumerate(tail) if any(n in line for n in needles)]
        if found:
            start = found[-1]
            break
    return "".join(tail[max(0, start) :][:lines]).rstrip()


def thread_failures(path: str, offset: int) -> list[str]:
    """Apache's lines since OFFSET saying a worker thread could not be
    started (the whole log when it is shorter than OFFSET: rotated)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            log.seek(offset if 0 <= offset <= log.tell() else 0)
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if THREAD_FAILURE in line]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sidecars": {"type": "list", "elements": "dict", "required": True},
            "app": {"type": "dict", "required": True},
            "timeout": {"type": "float", "default": 60},
            "settle": {"type": "float", "default": 0},
            "error_log": {"type": "path", "required": True},
            "error_log_offset": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    started = time.monotonic()
    params = module.params
    problems = wait(params["sidecars"], params["app"], params["timeout"], params["settle"])
    if problems:
        names = [name for name in problems if name != "the WSGI application"]
        module.fail_json(
            msg=(
                f"Not serving after {module.params['timeout']:g} s: "
                + "; ".join(f"{name}: {why}" for name, why in problems.items())
                + f". Last lines of {module.params['error_log']}"
                + (f" naming {', '.join(names)}" if names else "")
                + ":\n"
                + log_excerpt(module.params["error_log"], names)
            ),
            problems=problems,
        )
    failures = thread_failures(params["error_log"], params["error_log_offset"])
    if failures:
        module.fail_json(
            msg=(
                f"Apache logged {len(failures)} time(s) that it could not start a worker"
                " thread (AH00480): the host lets it have fewer processes and threads than the"
                " planned load needs (each thread takes a PID: kernel.pid_max of the host,"
                " which a container's own value may hide, kernel.threads-max, or the"
                " service's LimitNPROC), and WebSockets past the threads it has would hang."
                " Lower mod_wsgi_ws_sidecar_capacity_websockets or the sidecars' max_clients,"
                f" or raise the host's limit. First of them in {params['error_log']}:\n"
                + failures[0]
            ),
            thread_failures=len(failures),
        )
    module.exit_json(changed=False, waited=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
