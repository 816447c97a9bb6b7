"""Finds the programs, other than mod_wsgi's daemon processes, that listen
where a sidecar's TCP listener would be (for plugins/modules/host_facts.py).

A sidecar could not bind a port another program holds, and a connection to
it would reach that program instead. The listeners that count are those
that accept a connection to 127.0.0.1 (bound to 127.0.0.1, to every IPv4
address, or dual-stack to every address); mod_wsgi's daemon processes
(their title starts with "(wsgi:"), where the role's sidecars run, are left
out."""

from __future__ import annotations

import os
from pathlib import Path

LISTEN = "0A"
# Local addresses, as /proc/net/tcp{,6} spell them, that accept 127.0.0.1.
ACCEPTS_LOOPBACK = {
    "/proc/net/tcp": {"0100007F", "00000000"},
    "/proc/net/tcp6": {"00000000000000000000000000000000", "0000000000000000FFFF00000100007F"},
}
DAEMON_TITLE = "(wsgi:"


def listening_inodes(ports: set[int], tables: dict[str, set[str]] | None = None) -> dict:
    """Socket inode -> port, for the listening sockets on PORTS that accept 127.0.0.1
    (TABLES: /proc/net table -> the addresses that do; ACCEPTS_LOOPBACK by default)."""
    found = {}
    for table, addresses in (ACCEPTS_LOOPBACK if tables is None else tables).items():
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 on this host
        for line in lines:
            fields = line.split()
            address, _colon, port = fields[1].partition(":")
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
