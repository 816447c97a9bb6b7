"""Reads, in one round trip, what the role's host checks need: which paths
exist and what they are, whether the host has an address, who else listens
on the sidecars' ports, the open-files limit services may have, and the
versions of some Pythons. Reads only; the rules on these facts are
plugins/module_utils/host_rules.py."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: What the role's host checks need, in one round trip (internal)
description:
  - Internal to the role C(mod_wsgi_ws_sidecar.apache.mod_wsgi_ws_sidecar), whose
    C(tasks/host_checks.yml) calls it and hands its result to the filter
    C(mod_wsgi_ws_sidecar.apache.host_plan). It is documented so that C(ansible-doc) can show it;
    its options and results are not a public interface and may change in any release.
  - Reads only; runs in check mode.
options:
  paths:
    description: Paths to look at.
    type: list
    elements: str
    default: []
  bind:
    description: An address to bind port 0 on, to show the host has it ("" for none).
    type: str
    default: ""
  ports:
    description: TCP ports whose other listeners to name (plugins/module_utils/port_holders.py).
    type: list
    elements: int
    default: []
  interpreters:
    description: Pythons whose major.minor version to read, where executable.
    type: list
    elements: str
    default: []
  error_log:
    description: Apache's error log, whose size to read.
    type: path
  site_packages_of:
    description: A Python whose first site-packages directory to name, where executable.
    type: path
author: mod_wsgi_ws_sidecar maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Look at the host before writing Apache's configuration
  mod_wsgi_ws_sidecar.apache.host_facts:
    paths: [/etc/ssl/private/site.key, /srv/venv]
    bind: 127.0.0.2
    ports: [8765]
    interpreters: [/usr/bin/python3, /srv/venv/bin/python]
    error_log: /var/log/apache2/error.log
  register: facts

- name: Stop when another program listens on the sidecar's port
  ansible.builtin.fail:
    msg: "Port 8765 is taken by {{ facts.holders['8765'] | join(', ') }}"
  when: facts.holders['8765'] | length > 0
"""

RETURN = r"""
paths:
  description: >-
    Path -> exists and islnk (of the path itself), isreg, isdir, issock
    and executable (of what a link leads to).
  type: dict
  returned: always
bind_error:
  description: Why binding the address failed, "" when it worked or none was given.
  type: str
  returned: always
holders:
  description: Port (as a string) -> "COMMAND LINE (pid N)" of each other program listening there.
  type: dict
  returned: always
open_files_limit:
  description: >-
    The hard open-files limit of PID 1 ("unlimited" or a number as a
    string), which services get at most.
  type: str
  returned: always
error_log_size:
  description: >-
    Bytes in I(error_log) now (0 when it does not exist yet): the readiness
    wait reads what Apache logs after it.
  type: int
  returned: always
task_limit:
  description: >-
    How many processes and threads the host's kernel allows at once, all
    users together: the lower of kernel.pid_max and kernel.threads-max (a
    number as a string, or "unlimited" when neither can be read).
  type: str
  returned: always
python_versions:
  description: Interpreter -> "major.minor", for those that are executable.
  type: dict
  returned: always
site_packages:
  description: >-
    The first site-packages directory of I(site_packages_of), "" when none
    was given or it is not executable (a virtual environment still to be made).
  type: str
  returned: always
"""


import os
import re
import socket
import stat
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.port_holders import (
    holders,
)


def describe(path: str) -> dict[str, bool]:
    """What is at the path: exists and islnk of the path itself, the kind
    of what a link leads to (a certificate is often a link)."""
    try:
        own = os.lstat(path).st_mode
    except OSError:
        return dict.fromkeys(("exists", "isreg", "isdir", "issock", "islnk", "executable"), False)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = own  # a link to nothing
    return {
        "exists": True,
        "islnk": stat.S_ISLNK(own),
        "isreg": stat.S_ISREG(mode),
        "isdir": stat.S_ISDIR(mode),
        "issock": stat.S_ISSOCK(mode),
        "executable": stat.S_ISREG(mode) and os.access(path, os.X_OK),
    }


def bind_error(address: str) -> str:
    if not address:
        return ""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family) as probe:
            probe.bind((address, 0))
    except OSError as error:
        return str(error)
    return ""


def open_files_limit(limits: str = "/proc/1/limits") -> str:
    """Services get at most the hard limit PID 1 has (systemd cannot raise
    its own without CAP_SYS_RESOURCE, as in an unprivileged container)."""
    with open(limits, encoding="ascii") as stream:
        found = re.search(r"^Max open files\s+\S+\s+(\S+)", stream.read(), re.MULTILINE)
    return found.group(1) if found else "unlimited"


def task_limit(proc_sys: str = "/proc/sys/kernel") -> str:
    """Every thread takes a PID: Apache's thousands of threads count against
    the lower of the two kernel limits."""
    found = []
    for name in ("pid_max", "threads-max"):
        try:
            with open(f"{proc_sys}/{name}", encoding="ascii") as stream:
                found.append(int(stream.read().strip()))
        except (OSError, ValueError):
            continue
    return str(min(found)) if found else "unlimited"


def file_size(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def python_says(interpreter: str | None, code: str) -> str | None:
    """What `interpreter -c code` prints, or None if it is not executable or fails."""
    if not (interpreter and os.path.isfile(interpreter) and os.access(interpreter, os.X_OK)):
        return None
    # Not module.run_command, which has no timeout: an interpreter that hangs
    # fails the check after 30 s instead of holding the run.
    done = subprocess.run(  # pylint: disable=ansible-bad-function
        [interpreter, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def python_version(interpreter: str) -> str | None:
    return python_says(interpreter, "import sys; print('%d.%d' % sys.version_info[:2])")


def site_packages(interpreter: str | None) -> str:
    """Where the interpreter's packages go ("" if there is no such interpreter)."""
    return python_says(interpreter, "import site; print(site.getsitepackages()[0])") or ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "str", "default": []},
            "bind": {"type": "str", "default": ""},
            "ports": {"type": "list", "elements": "int", "default": []},
            "interpreters": {"type": "list", "elements": "str", "default": []},
            "error_log": {"type": "path", "default": None},
            "site_packages_of": {"type": "path", "default": None},
        },
        supports_check_mode=True,
    )
    params = module.params
    versions = {}
    for interpreter in params["interpreters"]:
        version = python_version(interpreter)
        if version:
            versions[interpreter] = version
    module.exit_json(
        changed=False,
        paths={path: describe(path) for path in params["paths"]},
        bind_error=bind_error(params["bind"]),
        holders=holders(params["ports"]),
        open_files_limit=open_files_limit(),
        task_limit=task_limit(),
        error_log_size=file_size(params["error_log"]),
        python_versions=versions,
        site_packages=site_packages(params["site_packages_of"]),
    )


if __name__ == "__main__":
    main()
