"""Restarts the application's mod_wsgi daemon processes gracefully, and
nothing else: the sidecars' daemon processes and Apache's own keep running,
so every WebSocket and push subscription stays open while new application
code goes live.

mod_wsgi restarts a daemon process gracefully on SIGUSR1: it goes on
serving, finishes what it serves (up to graceful-timeout, then
shutdown-timeout), and Apache starts a new one on the same listener
socket, where new requests wait meanwhile. The processes are found by the
name mod_wsgi gives them (display-name), as /proc shows it: written over
Apache's own argv[0], so cut or space-padded to that length."""

from __future__ import annotations

DOCUMENTATION = r"""
module: restart_application
short_description: Gracefully restart only the application's mod_wsgi daemon processes
description:
  - Sends SIGUSR1 to each daemon process of the application's process group,
    found by its display name and user, then waits until every one of them
    has ended and as many new ones run.
  - The sidecars' processes and Apache's are left alone, so WebSockets stay open.
  - In check mode, reports the processes it would restart.
options:
  display_name:
    description: >-
      The application group's display name, as mod_wsgi shows it, such as
      "(wsgi:wsgi-app)".
    type: str
    required: true
  user:
    description: The user the daemon processes run as.
    type: str
    required: true
  processes:
    description: How many daemon processes the group has.
    type: int
    required: true
  others:
    description: >-
      The display names of the other daemon groups (the sidecars'). A run
      that could not tell the application's processes from theirs fails
      without signalling any.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for the old processes to end and the new ones to start.
    type: int
    default: 60
author: mod_wsgi_ws_sidecar maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Put the application's new code live, WebSockets kept
  mod_wsgi_ws_sidecar.apache.restart_application:
    display_name: (wsgi:wsgi-app)
    user: www-data
    processes: 2
    others: ["(wsgi:metrics-sidecar)", "(wsgi:push)"]
"""

RETURN = r"""
restarted:
  description: The process IDs signalled.
  type: list
  elements: int
  returned: always
running:
  description: The application's process IDs afterwards (none in check mode).
  type: list
  elements: int
  returned: always
seconds:
  description: How long the old processes took to end and the new ones to start.
  type: float
  returned: always
signalled_at:
  description: When the processes were signalled (Unix time; 0 in check mode).
  type: float
  returned: always
"""


import contextlib
import os
import pwd
import signal
import time

from ansible.module_utils.basic import AnsibleModule

PROC = "/proc"


def shown_as(display_name: str, length: int) -> str:
    """A display name as /proc shows it over an argv[0] of `length` characters."""
    return display_name.ljust(length)[:length]


def process_name(pid: str, proc: str = PROC) -> str:
    """The first argument of a process's command line ("" if it has gone)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0", 1)[0].decode("utf-8", "replace")
    except OSError:
        return ""


def owner(pid: str, proc: str = PROC) -> int:
    try:
        return os.stat(f"{proc}/{pid}").st_uid
    except OSError:
        return -1


def named(display_name: str, uid: int, proc: str = PROC) -> list[int]:
    """The processes of `uid` that mod_wsgi named `display_name`."""
    found = []
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        name = process_name(pid, proc)
        if name and name == shown_as(display_name, len(name)) and owner(pid, proc) == uid:
            found.append(int(pid))
    return sorted(found)


def indistinct(display_name: str, others: list[str], length: int) -> list[str]:
    """The other groups whose names look the same over an argv[0] this long."""
    shown = shown_as(display_name, length)
    return [o for o in others if o != display_name and shown_as(o, length) == shown]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "display_name": {"type": "str", "required": True},
            "user": {"type": "str", "required": True},
            "processes": {"type": "int", "required": True},
            "others": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        uid = pwd.getpwnam(p["user"]).pw_uid
    except KeyError:
        module.fail_json(msg=f"No user {p['user']} on this host.")
    old = named(p["display_name"], uid)
    if not old:
        module.fail_json(
            msg=f"No daemon process named {p['display_name']} runs as {p['user']}: is Apache"
            " (or mod_wsgi-express) running the application?"
        )
    length = len(process_name(str(old[0])))
    if clash := indistinct(p["display_name"], p["others"], length):
        module.fail_json(
            msg=f"{p['display_name']} and {', '.join(clash)} look the same in the process"
            f" list (cut to {length} characters), so the application's processes cannot be"
            " told from theirs; give the application's process group a shorter name."
        )
    if module.check_mode:
        module.exit_json(changed=True, restarted=old, running=[], seconds=0.0, signalled_at=0.0)
    signalled_at, started = time.time(), time.monotonic()
    for pid in old:
        # One that ended on its own meanwhile has a successor coming anyway.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    deadline = started + p["timeout"]
    while True:
        running = named(p["display_name"], uid)
        if not set(old) & set(running) and len(running) >= p["processes"]:
            break
        if time.monotonic() > deadline:
            module.fail_json(
                msg=f"The application's daemon processes did not restart within"
                f" {p['timeout']} s: still running {sorted(set(old) & set(running))} of"
                f" {old}, new {sorted(set(running) - set(old))}.",
                restarted=old,
                running=running,
            )
        time.sleep(0.1)
    module.exit_json(
        changed=True,
        restarted=old,
        running=running,
        seconds=round(time.monotonic() - started, 2),
        signalled_at=signalled_at,
    )


if __name__ == "__main__":
    main()
