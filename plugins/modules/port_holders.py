"""Finds the programs, other than mod_wsgi's daemon processes, that listen
where a sidecar's TCP listener would be."""

from __future__ import annotations

import os
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: port_holders
short_description: Name the programs other than mod_wsgi daemons listening on loopback ports
description:
  - For each port, the processes holding a listening TCP socket that would
    accept a connection to 127.0.0.1 on it (bound to 127.0.0.1, to every
    IPv4 address, or dual-stack to every address), leaving out mod_wsgi's
    daemon processes (their title starts with C((wsgi:)), where the role's
    sidecars run.
  - A sidecar could not bind a port another program holds, and a connection
    to it would reach that program instead. Reads only; runs in check mode.
options:
  ports:
    description: The sidecars' TCP ports.
    type: list
    elements: int
    required: true
author: mod_wsgi_ws_sidecar maintainers
"""

RETURN = r"""
holders:
  description: Port (as a string) -> "COMMAND LINE (pid N)" of each other program listening there.
  type: dict
  returned: always
"""

LISTEN = "0A"
# Local addresses, as /proc/net/tcp{,6} spell them, that accept 127.0.0.1.
ACCEPTS_LOOPBACK = {
    "/proc/net/tcp": {"0100007F", "00000000"},
    "/proc/net/tcp6": {"00000000000000000000000000000000", "0000000000000000FFFF00000100007F"},
}
DAEMON_TITLE = "(wsgi:"


def listening_inodes(ports: set[int], tables: dict[str, set[str]] = ACCEPTS_LOOPBACK) -> dict:
    """Socket inode -> port, for the listening sockets on PORTS that accept 127.0.0.1."""
    found = {}
    for table, addresses in tables.items():
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 on this host
        for line in lines:
            fields = line.split()
            address, _, port = fields[1].partition(":")
            if fields[3] == LISTEN and address in addresses and int(port, 16) in ports:
                found[fields[9]] = int(port, 16)
    return found


def command_line(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip() or "?"


def holders(ports: list[int], proc: str = "/proc") -> dict[str, list[str]]:
    """Port -> the other programs listening on it (empty list: none). A
    listener shared by forked processes (Apache's children) is named once,
    by its lowest pid."""
    inodes = listening_inodes(set(ports))
    found: dict[str, dict[str, int]] = {str(port): {} for port in ports}
    if not inodes:
        return {port: [] for port in found}
    for pid in sorted(map(int, filter(str.isdigit, os.listdir(proc)))):
        try:
            fds = os.listdir(f"{proc}/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                target = os.readlink(f"{proc}/{pid}/fd/{fd}")
            except OSError:
                continue
            inode = target[len("socket:[") : -1] if target.startswith("socket:[") else ""
            if inode in inodes:
                cmdline = command_line(str(pid))
                if not cmdline.startswith(DAEMON_TITLE):
                    found[str(inodes[inode])].setdefault(cmdline, pid)
    return {
        port: [f"{cmdline} (pid {pid})" for cmdline, pid in programs.items()]
        for port, programs in found.items()
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={"ports": {"type": "list", "elements": "int", "required": True}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, holders=holders(module.params["ports"]))


if __name__ == "__main__":
    main()
