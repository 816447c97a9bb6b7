"""Runs a user's own mod_wsgi service script so that a failure restarts it.

The role imports, through WSGIImportScript, a small script of its own for
each user's sidecar; that script calls run() with the user's script. If the
user's script raises at import (or calls sys.exit), the error is logged
once, with its whole chain of causes, and the daemon process ends after a
second, so that mod_wsgi starts a fresh one (a bare SystemExit, which is how
mod_wsgi stops a service script, ends it at once and quietly): mod_wsgi 5.0 may otherwise keep
a process up with no listener for seconds, and a uvicorn that fails at start
then hides its first error behind a second one while restoring signal
handlers. A script that returns (having started threads, say) is left alone.
Standard library only: the user's sidecar may run in any environment.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
import traceback

# Long enough that a failing script costs one restart a second, not a spin.
RESTART_DELAY = 1.0


def module_name(name: str) -> str:
    """The __name__ the user's script runs under: not "__main__", as under
    WSGIImportScript itself, so code guarded for standalone runs stays off."""
    return "_mod_wsgi_ws_sidecar_" + "".join(c if c.isalnum() else "_" for c in name)


def run(path: str, name: str, exit_process=os._exit) -> None:
    """Runs the script at PATH for sidecar NAME; ends the process if it fails."""
    try:
        runpy.run_path(path, run_name=module_name(name))
    except SystemExit as stop:
        if stop.code in (None, 0):
            # mod_wsgi turns the SIGTERM of an Apache restart or stop into a
            # bare SystemExit in a service script: an orderly end.
            exit_process(0)
        else:
            fail(path, name, exit_process)
    except BaseException:
        fail(path, name, exit_process)


def fail(path: str, name: str, exit_process) -> None:
    """Logs the error being handled, once, and ends the process after a pause."""
    print(
        f"mod_wsgi_ws_sidecar: sidecar {name}: {path} failed; "
        f"this daemon process exits for mod_wsgi to start a fresh one",
        file=sys.stderr,
    )
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()
    time.sleep(RESTART_DELAY)
    exit_process(1)
