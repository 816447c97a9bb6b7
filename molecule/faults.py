"""Fault injection for the sidecar, shared by the scenarios' test_faults.py.

Two halves in one file:

* run inside the container under test (staged beside wsclient.py, its
  WebSocket client; standard library only), it injects one fault
  and measures what follows, all on loopback, every wait bounded:

      python3 faults.py cycle --action kill|graceful|restart|unlink --group G \\
          --ws-path /metrics/ws --listen tcp:8765|unix:/run/.../sidecar.sock
      python3 faults.py stall --group G --ws-path /metrics/ws --stallers 5 --hold 25

  and prints one JSON document;
* imported by the tests (molecule/ is on sys.path: pytest puts the directory
  of molecule/conftest.py there), `stage` copies it into the container and
  `run` calls it there.

Sidecar daemon processes are found as Apache shows them: mod_wsgi sets their
title to "(wsgi:GROUP)" (display-name=%{GROUP}), cut to the length of
Apache's argv[0], and their parent is Apache's main process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import wsclient  # beside this file, in molecule/ and in STAGE_DIR alike

APACHE_ARGV0 = "/usr/sbin/apache2"
APACHE_PID_FILE = "/run/apache2/apache2.pid"
ERROR_LOG = "/var/log/apache2/error.log"
DROP_WARNING = "WARNING dropping client"
SIDECAR_ERROR = ": ERROR "  # how the sidecars' log lines at ERROR read ("NAME: ERROR ...")
STAGE_DIR = "/opt/mws-test"  # where stage() puts it: conftest.STAGE_DIR


# --- inside the container ------------------------------------------------------------------


def title(group: str) -> str:
    """The process title mod_wsgi gives a daemon process of `group`."""
    return f"(wsgi:{group})"[: len(APACHE_ARGV0)]


def apache_main_pid() -> int | None:
    try:
        pid = int(Path(APACHE_PID_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def processes() -> list[dict]:
    """Every process as ps shows it: pid, parent pid and command line."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    rows = []
    for line in out.splitlines():
        pid, ppid, args = line.split(None, 2)
        rows.append({"pid": int(pid), "ppid": int(ppid), "args": args})
    return rows


def sidecars(group: str) -> list[dict]:
    """The daemon processes of one sidecar group, wherever their parent is."""
    return [p for p in processes() if p["args"].startswith(title(group))]


def rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def ws_open(
    path: str, rcvbuf: int | None = None, mss: int | None = None, timeout: float = 3.0
) -> socket.socket:
    """A WebSocket through Apache on 127.0.0.1:80, past its 101 answer and not a
    byte further (frames after the handshake stay in the socket)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Both before connect: they shape the window offered to Apache from the start.
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if mss:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", 80))
    answer = wsclient.handshake(sock, path)  # reads the head only, frames stay
    if answer.status != 101:
        sock.close()
        raise ConnectionError(f"handshake refused: {answer.status_line}")
    return sock


def first_frame(path: str, timeout: float) -> dict:
    """One snapshot or error frame through Apache, or raises."""
    sock = ws_open(path, timeout=timeout)
    try:
        while True:
            frame = wsclient.read_frame(sock)
            if frame.opcode == wsclient.PING:
                wsclient.send_pong(sock, frame.payload)
            elif frame.opcode == wsclient.TEXT:
                return json.loads(frame.payload)
            elif frame.opcode == wsclient.CLOSE:
                raise ConnectionError("closed before the first frame")
    finally:
        sock.close()


def listeners(listen: str) -> list[str]:
    """ss's listening sockets on the sidecar's port or socket path, with their owners."""
    kind, _, where = listen.partition(":")
    flag = "-Hltnp" if kind == "tcp" else "-Hlxp"
    out = subprocess.run(
        ["ss", flag], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    if kind == "tcp":
        return [line for line in out.splitlines() if line.split()[3].endswith(f":{where}")]
    return [line for line in out.splitlines() if f" {where} " in f" {line} "]


def connections(listen: str) -> list[str]:
    """Connections the sidecar still holds (accepted sockets on its port or path)."""
    kind, _, where = listen.partition(":")
    if kind == "tcp":
        command = ["ss", "-Htn", "state", "established", f"( sport = :{where} )"]
    else:
        command = ["ss", "-Hx", "state", "established", f"( src {where} )"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=10).stdout
    return out.splitlines()


def socket_dir_entries(listen: str) -> list[str] | None:
    kind, _, where = listen.partition(":")
    return sorted(os.listdir(os.path.dirname(where))) if kind == "unix" else None


def act(action: str, pid: int, listen: str) -> None:
    if action == "kill":
        os.kill(pid, signal.SIGKILL)
    elif action == "unlink":  # a tmp cleaner's or an operator's rm of the unix socket
        os.unlink(listen.partition(":")[2])
    elif action == "graceful":
        subprocess.run(["apache2ctl", "graceful"], check=True, timeout=30, capture_output=True)
    elif action == "restart":
        subprocess.run(
            ["systemctl", "restart", "apache2"], check=True, timeout=60, capture_output=True
        )
    else:
        raise ValueError(action)


def trial(args) -> dict:
    """One fault, then how long until the sidecar is back, and what is left over."""
    before = sidecars(args.group)
    if len(before) != 1:
        return {"error": "not exactly one sidecar process before the fault", "before": before}
    old = before[0]["pid"]
    started = time.monotonic()
    deadline = started + args.within
    act(args.action, old, args.listen)
    acted = time.monotonic() - started
    result = {"old_pid": old, "action_s": round(acted, 3), "attempts": 0, "last_error": None}
    # Back: the old process gone, a new one, and a frame through Apache from it.
    frame = None
    while time.monotonic() < deadline:
        current = [p["pid"] for p in sidecars(args.group)]
        if old not in current and current:
            result["attempts"] += 1
            try:
                frame = first_frame(args.ws_path, timeout=min(2.0, args.within))
                break
            except (OSError, ValueError) as exc:
                result["last_error"] = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    result["frame_after_s"] = round(time.monotonic() - started, 3) if frame else None
    result["frame_type"] = frame and frame.get("type")
    # Settled: one process per group, a child of Apache's main process (an old
    # one still finishing is given until the deadline).
    while True:
        main = apache_main_pid()
        found = sidecars(args.group)
        if (len(found) == 1 and found[0]["ppid"] == main) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    result["settled_after_s"] = round(time.monotonic() - started, 3)
    result["apache_pid"] = main
    result["sidecars"] = found
    result["listeners"] = listeners(args.listen)
    result["socket_dir"] = socket_dir_entries(args.listen)
    return result


def cycle(args) -> list[dict]:
    """--count faults in a row, each starting at least --min-period after the one
    before; stops at the first trial the sidecar does not come back from."""
    results = []
    for _ in range(args.count):
        started = time.monotonic()
        results.append(trial(args))
        if results[-1].get("frame_after_s") is None:
            break
        time.sleep(max(0.0, started + args.min_period - time.monotonic()))
    return results


def ping_frames(count: int) -> bytes:
    """`count` masked ping frames with the largest payload a control frame may carry."""
    return wsclient.encode_frame(wsclient.PING, os.urandom(125)) * count


# A dropped staller's connection drains, then ends: in well under a second.
# A pause while draining is not its end, so all drain at once for this long.
DRAIN_DEADLINE = 30.0
# A staller's receive buffer. Small, so the window it offers Apache is small
# from the start; not smaller: with 2 KB, Linux shrank the segments to 1 KB
# and, once the window closed, one staller in five was sent nothing when it
# read again but Apache's zero-window probes, backing off to 12 s and more.
STALLER_RCVBUF = 16384
# The segment size a staller announces, well below its buffer: Linux opens a
# closed window again only by whole segments of the size it receives, so with
# loopback's 64 KB segments a staller that reads after a long stall may tell
# Apache nothing, and wait for Apache's zero-window probe, whose interval
# doubles while the window stays shut (a drain of 13.5 s was seen).
STALLER_MSS = 4096
# The stallers flood until the sidecar has dropped every one of them (its
# warnings in the error log), for at most this long from the start of the
# hold: a sidecar slowed by the machine's other work takes longer to fill the
# buffers between it and a staller, but the buffers are finite.
FLOOD_DEADLINE = 90.0
# And at most this many bytes of pings each: above what every buffer on the
# way there and back holds at the kernel's largest sizes (tcp_wmem's and
# tcp_rmem's maxima, 4 MB and 32 MB on these hosts: about 110 MB).
FLOOD_BYTES = 256 << 20
# At most this many bytes a second each, above what the sidecar reads (about
# 1.5 MB/s a staller with five): once the sidecar has dropped a staller,
# Apache reads and discards its pings while it closes the connection, as
# fast as loopback goes, until the test sees the last drop.
FLOOD_RATE = 8 << 20


class LogTail:
    """The lines appended to a file since it was opened at `offset`, whole
    lines only (a line still being written waits for the next read)."""

    def __init__(self, path: str, offset: int):
        self._file = open(path, "rb")  # noqa: SIM115 (read for the life of the stall)
        self._file.seek(offset)
        self._partial = b""

    def new_lines(self) -> list[str]:
        data = self._partial + self._file.read()
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace").strip() for line in lines]

    def close(self) -> None:
        self._file.close()


def drain(socks: list[socket.socket], deadline: float) -> dict:
    """Reads every socket until its EOF (or reset), all at once, for up to
    deadline seconds in all: per socket its state, bytes drained and seconds taken."""
    started = time.monotonic()
    seen = {sock: {"state": "open", "drained": 0, "drain_s": None} for sock in socks}
    for sock in socks:
        sock.setblocking(False)
    pending = set(socks)
    while pending and (left := started + deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(list(pending), [], [], min(left, 1.0))
        for sock in readable:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError as exc:
                chunk, seen[sock]["state"] = b"", f"reset ({type(exc).__name__})"
            if chunk:
                seen[sock]["drained"] += len(chunk)
                continue
            if seen[sock]["state"] == "open":
                seen[sock]["state"] = "closed"
            seen[sock]["drain_s"] = round(time.monotonic() - started, 3)
            pending.discard(sock)
    return seen


def stall(args) -> dict:
    """Stalled clients beside one reading client: the reader's frame gaps, the
    sidecar's RSS before, during and after, and the sidecar's drop warnings.

    A staller never reads a byte after its handshake and, with --flood, sends
    pings as fast as the tunnel takes them: each ping is a pong the sidecar
    must write to a client that does not read (without them, Apache's and the
    kernel's socket buffers, megabytes on loopback, absorb the one small frame
    a second for hours before anything stays unsent in the sidecar). The pongs
    fill those buffers first; only then does the sidecar hold data unsent and
    drop the staller. So a staller floods, blocked or not, until the sidecar
    has dropped every staller: one that stopped while the sidecar, slowed by
    the machine's other work, was still reading its pings would have left the
    buffers short of full, and the sidecar nothing to see.
    """
    (pid,) = [p["pid"] for p in sidecars(args.group)]
    log = LogTail(ERROR_LOG, os.path.getsize(ERROR_LOG))

    def sample(seconds: float) -> list[int]:
        samples, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(rss_kb(pid))
            time.sleep(0.5)
        return samples

    rss_before = sample(args.settle)
    # Apache may keep an earlier plain request's connection to the sidecar for
    # reuse: only connections made from here on must be gone at the end.
    held_before = {line.split()[-1] for line in connections(args.listen)}
    reader = ws_open(args.ws_path, timeout=args.hold + 10)
    stallers = [
        ws_open(args.ws_path, rcvbuf=args.rcvbuf, mss=args.mss) for _ in range(args.stallers)
    ]
    batch = ping_frames(500)
    flooding = {sock: {"sent": 0, "end": None} for sock in stallers}
    for sock in stallers:
        sock.setblocking(False)
    started = time.monotonic()
    frames, rss_during, drops, drops_seen_s, errors = [], [], [], [], []
    next_sample = started
    # The reader reads for the hold at least; past it, while the sidecar has
    # yet to drop every staller, up to the flood's deadline.
    while (now := time.monotonic()) < started + args.hold or (
        len(drops) < args.stallers and now < started + args.flood_deadline
    ):
        if now >= next_sample:
            rss_during.append(rss_kb(pid))
            next_sample += 0.5
        lines = log.new_lines()
        new_drops = [line for line in lines if DROP_WARNING in line]
        drops += new_drops
        errors += [line for line in lines if SIDECAR_ERROR in line]
        drops_seen_s += [round(now - started, 1)] * len(new_drops)
        # Once all are dropped, none floods on: Apache would read and discard
        # the pings of a dropped one while it closes, at loopback's speed.
        flood = args.flood and len(drops) < args.stallers
        allowed = args.flood_rate * (now - started + 1)  # a second's worth at once
        writers = [
            s for s, f in flooding.items() if flood and f["end"] is None and f["sent"] < allowed
        ]
        readable, writable, _ = select.select([reader], writers, [], 0.1)
        for sock in writable:
            state = flooding[sock]
            try:
                state["sent"] += sock.send(batch)
            except BlockingIOError:
                pass
            except OSError as exc:
                state["end"] = type(exc).__name__
            if state["sent"] >= args.flood_bytes:
                state["end"] = "byte budget spent"
        if not readable:
            continue
        # select() is exact here: wsclient buffers nothing between frames.
        frame = wsclient.read_frame(reader)
        if frame.opcode == wsclient.PING:
            wsclient.send_pong(reader, frame.payload)
        elif frame.opcode == wsclient.TEXT:
            data = json.loads(frame.payload)
            frames.append((time.monotonic(), time.time(), data["seq"], data["time"]))
        elif frame.opcode == wsclient.CLOSE:
            break
    flooded_s = round(time.monotonic() - started, 3)
    reader.close()
    at_end = drain(stallers, DRAIN_DEADLINE)
    for sock in stallers:
        at_end[sock].update(flooding[sock])
        sock.close()
    at_end = [at_end[sock] for sock in stallers]
    rss_after = sample(args.settle)
    # Every drop the sidecar logged since the start, the late ones too.
    lines = log.new_lines()
    log.close()
    drops += [line for line in lines if DROP_WARNING in line]
    errors += [line for line in lines if SIDECAR_ERROR in line]
    arrivals = [f[0] for f in frames]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    seqs = [f[2] for f in frames]
    # The first frame is the latest snapshot, sent on connect: up to one interval old.
    latencies = [f[1] - f[3] for f in frames[1:]]
    return {
        "pid": pid,
        "pid_after": [p["pid"] for p in sidecars(args.group)],
        "frames": len(frames),
        "seq_steps": sorted({b - a for a, b in itertools.pairwise(seqs)}),
        "gap_max_s": round(max(gaps), 3) if gaps else None,
        "gap_median_s": round(statistics.median(gaps), 3) if gaps else None,
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "rss_before_kb": rss_before,
        "rss_during_kb": rss_during,
        "rss_after_kb": rss_after,
        "stallers": at_end,
        "flooded_s": flooded_s,
        "drops": drops,
        "drops_seen_s": drops_seen_s,
        "errors": errors,
        "connections_after": [
            line for line in connections(args.listen) if line.split()[-1] not in held_before
        ],
    }


# --- in the tests --------------------------------------------------------------------------

# The wait a fault gets before a trial counts as failed; the limits asserted are tighter.
TRIAL_DEADLINE = 30.0
# Other test runs share the machine's two cores: a trial is given this long to come back
# after a graceful or full restart (a kill -9 must be back within KILL_RECOVERY).
KILL_RECOVERY = 5.0
RESTART_RECOVERY = 10.0
# The sidecar's RSS may grow by this much while stalled clients are held (and stay so
# after they are dropped: freed memory stays with the process's allocator).
RSS_SLACK_KB = 16 * 1024


def stage(host) -> str:
    """Copies this file and wsclient.py into the container; the staged faults.py."""
    from conftest import stage_scripts  # not at the top: this file also runs in the container

    stage_scripts(host, "faults.py", "wsclient.py")
    return f"{STAGE_DIR}/faults.py"


def run(host, kind: str, limit: float, **options) -> dict:
    """Runs the staged faults.py in the container, killed after `limit` seconds."""
    flags = []
    for name, value in options.items():
        flags += ["--" + name.replace("_", "-"), str(value)]
    result = host.run(
        "timeout %s python3 %s %s" + " %s" * len(flags),
        str(int(limit)),
        f"{STAGE_DIR}/faults.py",
        kind,
        *flags,
    )
    assert result.rc == 0, f"faults.py {kind} {flags}: rc {result.rc}: {result.stderr}"
    return json.loads(result.stdout)


def sidecar_config(host, group: str) -> dict:
    """The sidecar's JSON config as the role wrote it."""
    return json.loads(host.file(f"/etc/mod_wsgi_ws_sidecar/{group}.json").content_string)


def only_sidecar_group(host) -> str:
    """The one sidecar group (threads=0) of the running configuration."""
    from conftest import enabled_apache_config, wsgi_daemon_groups

    groups = wsgi_daemon_groups(enabled_apache_config(host))
    sidecar_groups = [name for name, options in groups.items() if "threads=0" in options.split()]
    assert len(sidecar_groups) == 1, groups
    return sidecar_groups[0]


def error_log_size(host) -> int:
    return int(host.check_output("stat -c %%s %s", ERROR_LOG))


def error_log_since(host, size: int) -> str:
    return host.check_output("tail -c +%s %s", str(size + 1), ERROR_LOG)


def trials(host, action: str, count: int, ws_path: str, listen: str) -> list[dict]:
    """`count` faults in a row, measured in the container (faults.py cycle)."""
    group = only_sidecar_group(host)
    stage(host)
    # systemd refuses a sixth start within 10 s (StartLimitBurst=5 per
    # StartLimitIntervalSec=10s): full restarts are paced below that.
    min_period = 2.6 if action == "restart" else 0.0
    results = run(
        host,
        "cycle",
        count * (TRIAL_DEADLINE + min_period) + 30,
        action=action,
        group=group,
        ws_path=ws_path,
        listen=listen,
        within=TRIAL_DEADLINE,
        count=count,
        min_period=min_period,
    )
    assert len(results) == count, f"trial {len(results)} of {count} failed: {results[-1]}"
    return results


def leftovers(trial: dict, listen: str) -> list[str]:
    """What a trial left that it should not have: not exactly one sidecar process,
    a child of Apache's main process, with exactly one listener (and for a unix
    socket, nothing but the socket in its directory)."""
    problems = []
    pids = [p["pid"] for p in trial["sidecars"]]
    if len(pids) != 1:
        problems.append(f"sidecar processes {trial['sidecars']}")
    elif trial["old_pid"] in pids:
        problems.append(f"the old sidecar {trial['old_pid']} is still there")
    orphans = [p for p in trial["sidecars"] if p["ppid"] != trial["apache_pid"]]
    if orphans:
        problems.append(f"not children of Apache ({trial['apache_pid']}): {orphans}")
    if len(trial["listeners"]) != 1:
        problems.append(f"listeners {trial['listeners']}")
    kind, _, where = listen.partition(":")
    if kind == "unix" and trial["socket_dir"] != [os.path.basename(where)]:
        problems.append(f"socket directory holds {trial['socket_dir']}")
    return problems


def assert_every_trial_back(results: list[dict], listen: str, within: float) -> dict:
    """Each trial: a frame through Apache within `within` s, nothing left over.
    Returns the figures (printed for the report)."""
    failures = []
    for number, trial in enumerate(results, 1):
        if "error" in trial:
            failures.append(f"trial {number}: {trial}")
            continue
        problems = leftovers(trial, listen)
        back = trial["frame_after_s"]
        if back is None or back > within:
            problems.append(f"no frame within {within} s: {back} ({trial['last_error']})")
        elif trial["frame_type"] != "snapshot":
            problems.append(f"first frame back is {trial['frame_type']}")
        if problems:
            failures.append(f"trial {number}: {problems}")
    assert not failures, failures
    backs = [trial["frame_after_s"] for trial in results]
    return {
        "trials": len(results),
        "back_max_s": max(backs),
        "back_median_s": statistics.median(backs),
        "pids": [trial["sidecars"][0]["pid"] for trial in results],
    }


def assert_stalled_clients_dropped_without_harm(
    host, ws_path: str, listen: str, stallers: int = 5, hold: float = 20.0
) -> dict:
    """Stalled clients through Apache beside a reading one (faults.py stall): the
    reader's ticks keep their cadence, the sidecar drops every staller with its
    own warning, stays the same process, and its RSS stays bounded.
    Returns the figures (printed for the report)."""
    group = only_sidecar_group(host)
    config = sidecar_config(host, group)
    interval = config["poll_interval"]
    stage(host)
    seen = run(
        host,
        "stall",
        FLOOD_DEADLINE + DRAIN_DEADLINE + 60,
        group=group,
        ws_path=ws_path,
        listen=listen,
        stallers=stallers,
        hold=hold,
    )
    figures = {
        "frames": seen["frames"],
        "gap_max_s": seen["gap_max_s"],
        "gap_median_s": seen["gap_median_s"],
        "latency_max_s": seen["latency_max_s"],
        "rss_before_kb": max(seen["rss_before_kb"]),
        "rss_during_max_kb": max(seen["rss_during_kb"]),
        "rss_after_kb": seen["rss_after_kb"][-1],
        "drops": len(seen["drops"]),
        "pongs_asked_mb": round(sum(s["sent"] for s in seen["stallers"]) / 2**20, 1),
        "drain_max_s": max((s["drain_s"] or DRAIN_DEADLINE) for s in seen["stallers"]),
        "flooded_s": seen["flooded_s"],
        "drops_seen_s": seen["drops_seen_s"],
    }
    # The reading client: a frame every tick, none skipped, none late by a tick.
    assert seen["frames"] >= hold / interval - 2, figures
    assert seen["seq_steps"] == [1], seen["seq_steps"]
    assert seen["gap_max_s"] <= 2 * interval, figures
    assert seen["latency_max_s"] <= interval, figures
    # Every staller dropped by the sidecar itself, for one of its two limits.
    reasons = (
        f"data unsent for longer than {config['send_timeout']}s",
        "bytes still unsent",
    )
    assert len(seen["drops"]) == stallers, (seen["drops"], seen["stallers"], figures)
    assert all(any(r in line for r in reasons) for line in seen["drops"]), seen["drops"]
    assert all(s["state"] != "open" for s in seen["stallers"]), seen["stallers"]
    # Each drop is its one warning: no request logged as failed with a traceback.
    assert seen["errors"] == [], seen["errors"]
    assert seen["connections_after"] == [], seen["connections_after"]
    # Nothing crashed, and memory stayed bounded (not proportional to the pongs asked for).
    assert seen["pid_after"] == [seen["pid"]], seen
    baseline = figures["rss_before_kb"]
    assert figures["rss_during_max_kb"] - baseline <= RSS_SLACK_KB, figures
    assert max(seen["rss_after_kb"]) - baseline <= RSS_SLACK_KB, figures
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["cycle", "stall"])
    parser.add_argument("--group", required=True)
    parser.add_argument("--ws-path", required=True)
    parser.add_argument("--action", choices=["kill", "graceful", "restart", "unlink"])
    parser.add_argument("--listen", required=True, help="tcp:PORT or unix:PATH")
    parser.add_argument("--within", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--min-period", type=float, default=0.0)
    parser.add_argument("--stallers", type=int, default=5)
    parser.add_argument("--rcvbuf", type=int, default=STALLER_RCVBUF)
    parser.add_argument("--mss", type=int, default=STALLER_MSS)
    parser.add_argument("--flood", type=int, default=1, help="0: stallers send nothing")
    parser.add_argument("--flood-bytes", type=int, default=FLOOD_BYTES)
    parser.add_argument("--flood-deadline", type=float, default=FLOOD_DEADLINE)
    parser.add_argument("--flood-rate", type=int, default=FLOOD_RATE, help="bytes/s each")
    parser.add_argument("--hold", type=float, default=25.0)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    json.dump(cycle(args) if args.kind == "cycle" else stall(args), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
