"""What the benchmark reads from /proc inside the container: memory and CPU of the server
processes, the machine's CPU use, and open TCP connections. Standard library only."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
# /proc/net/tcp state code of an established connection.
ESTABLISHED = "01"
GROUPS = ("apache", "sidecar", "nginx")


@dataclass
class Groups:
    """RSS (KiB) and CPU (seconds, per pid) of Apache, the sidecar and nginx at one moment."""

    rss_kb: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GROUPS, 0))
    processes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GROUPS, 0))
    cpu: dict[str, dict[int, float]] = field(default_factory=lambda: {g: {} for g in GROUPS})


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:  # the process ended meanwhile
        return None


def classify(comm: str, cmdline: str, sidecar_title: str) -> str | None:
    """Which group a process belongs to; mod_wsgi daemons are apache2 with a new title."""
    if comm == "nginx":
        return "nginx"
    if comm != "apache2":
        return None
    return "sidecar" if cmdline.startswith(sidecar_title) else "apache"


def sample_groups(sidecar_title: str) -> Groups:
    """sidecar_title: the start of the sidecar daemon's process title, e.g. '(wsgi:metrics-sid'."""
    groups = Groups()
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        comm = _read(f"/proc/{pid}/comm")
        cmdline = _read(f"/proc/{pid}/cmdline")
        statm = _read(f"/proc/{pid}/statm")
        stat = _read(f"/proc/{pid}/stat")
        if None in (comm, cmdline, statm, stat):
            continue
        assert comm is not None and cmdline is not None and statm is not None and stat is not None
        group = classify(comm.strip(), cmdline.replace("\0", " "), sidecar_title)
        if group is None:
            continue
        groups.processes[group] += 1
        groups.rss_kb[group] += int(statm.split()[1]) * PAGE_KB
        # utime and stime: fields 14 and 15, counted after the parenthesised command name.
        fields = stat.rsplit(")", 1)[1].split()
        groups.cpu[group][pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return groups


def cpu_seconds(before: Groups, after: Groups) -> dict[str, float]:
    """CPU used per group between two samples (pids that started meanwhile count in full)."""
    used = {}
    for group in GROUPS:
        old = before.cpu[group]
        used[group] = round(sum(t - old.get(pid, 0.0) for pid, t in after.cpu[group].items()), 3)
    return used


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat; the kernel's view, not namespaced."""
    text = _read("/proc/stat") or ""
    values = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user and nice
    return float(total - idle), float(total)


def container_cpu() -> float | None:
    """CPU seconds used by this container's cgroup (cgroup v1 cpuacct or v2), if readable."""
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            usage = _read(f"/sys/fs/cgroup/{controllers}{path}/cpuacct.usage")
            if usage is None:  # mounted under one controller's name only
                usage = _read(f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")
            return int(usage) / 1e9 if usage else None
        if controllers == "":
            stat = _read(f"/sys/fs/cgroup{path}/cpu.stat") or ""
            for row in stat.splitlines():
                if row.startswith("usage_usec "):
                    return int(row.split()[1]) / 1e6
    return None


def machine_busy_percent(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Share of all cores busy between two samples, in percent."""
    total = after[1] - before[1]
    return None if total <= 0 else round(100 * (after[0] - before[0]) / total, 1)


def established(ports: Iterable[int]) -> int:
    """Established TCP connections with either end on one of `ports` (IPv4 and IPv6)."""
    wanted = {f"{port:04X}" for port in ports}
    count = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (_read(path) or "").splitlines()[1:]:
            cols = line.split()
            if len(cols) < 4 or cols[3] != ESTABLISHED:
                continue
            if cols[1].rsplit(":", 1)[1] in wanted or cols[2].rsplit(":", 1)[1] in wanted:
                count += 1
    return count


def open_files_limit(sidecar_title: str) -> int | None:
    """The soft open-files limit of the sidecar's process, as Apache's service gave it."""
    for pid in (name for name in os.listdir("/proc") if name.isdigit()):
        cmdline = (_read(f"/proc/{pid}/cmdline") or "").replace("\0", " ")
        if not cmdline.startswith(sidecar_title):
            continue
        for line in (_read(f"/proc/{pid}/limits") or "").splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return int(soft) if soft.isdigit() else None
    return None
