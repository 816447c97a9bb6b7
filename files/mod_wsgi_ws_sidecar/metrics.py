"""The Prometheus endpoint of the built-in dashboard, and the counters every
built-in sidecar keeps for it (prometheus-client).

Apache's figures carry apache_exporter's names and labels, so dashboards
built on it work unchanged; they come from the dashboard's last scoreboard
reading, the host's load averages and the Apache processes' CPU times in
/proc. Open WebSockets per sidecar are counted on the scoreboard
(trends.py), a user's own sidecars' too. What happens inside the
built-in sidecars (refusals, slow clients dropped, fan-out delay, the push
channel's messages) each of them counts in its own process: prometheus-
client's multiprocess mode keeps those counters in files of one directory,
which the dashboard's endpoint adds up.

prometheus-client picks where it keeps values when it is first imported, so
this module imports it only in open_metrics, after the directory is set.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import trends as sidecar_trends

# apache_exporter's scoreboard states, by the dashboard's state names.
SCOREBOARD_LABELS = {
    "ready": "idle",
    "starting": "startup",
    "busy_read": "read",
    "busy_write": "reply",
    "keepalive": "keepalive",
    "dns": "dns",
    "closing": "closing",
    "logging": "logging",
    "graceful": "graceful_stop",
    "idle_kill": "idle_cleanup",
    "dead": "open_slot",
}
# From the arrival of a message (or a scoreboard reading) to its frame queued for everyone.
FANOUT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# What a dropped client's reason (sidecar.queue_frame) says, as a label.
SLOW = "slow"
FAILED = "failed"
# The text format every Prometheus reads (newer prometheus-client releases
# label the same text 1.0.0, which Prometheus 2 does not know by that name).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_COUNTER_FILE = re.compile(r"_(\d+)\.db$")


# --- Apache's figures (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class CpuTimes:
    """Seconds of CPU the Apache processes used, as mod_status adds them up:
    the parent's own and its reaped children's, and each live child's."""

    user: float
    system: float


def parse_proc_stat(text: str, ticks_per_second: int) -> tuple[float, float, float, float]:
    """utime, stime, cutime, cstime in seconds from one /proc/PID/stat line."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return tuple(t / ticks_per_second for t in (utime, stime, cutime, cstime))  # type: ignore[return-value]


def server_version(description: str) -> float | None:
    """apache_version's number, as apache_exporter makes it: "Apache/2.4.62 (Debian)" -> 2.04062."""
    match = re.match(r"Apache/(\d+)\.(\d+)\.(\d+)", description)
    if not match:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return float(f"{major}.{minor:02}{patch:03}")


def apache_families(
    snapshot: Mapping[str, Any] | None,
    summary: Mapping[str, Any] | None,
    websockets: Mapping[str, int],
    routes: Sequence[sidecar_trends.Route],
    server: Mapping[str, str],
    load: tuple[float, float, float] | None,
    cpu: CpuTimes | None,
) -> Iterator[Any]:
    """Metric families from one scoreboard reading (None: unreadable, so
    apache_up 0 and nothing else of Apache's) and what came with it."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    up = GaugeMetricFamily("apache_up", "Could the apache server be reached")
    up.add_metric([], 1 if snapshot is not None else 0)
    yield up
    caps = GaugeMetricFamily(
        "mod_wsgi_ws_sidecar_websockets_max",
        "The WebSockets a sidecar accepts at most (its max_clients)",
        labels=["sidecar"],
    )
    for route in routes:
        caps.add_metric([route.name], route.max_clients)
    yield caps
    if snapshot is None or summary is None:
        return
    info = GaugeMetricFamily("apache_info", "Apache version information", labels=["version", "mpm"])
    info.add_metric([server.get("description", ""), server.get("mpm", "")], 1)
    yield info
    version = server_version(server.get("description", ""))
    if version is not None:
        yield GaugeMetricFamily("apache_version", "Apache server version", value=version)
    generation = GaugeMetricFamily(
        "apache_generation", "Apache restart generation", labels=["type"]
    )
    generation.add_metric(["mpm"], float(snapshot.get("running_generation") or 0))
    yield generation
    if load is not None:
        family = GaugeMetricFamily("apache_load", "Apache server load", labels=["interval"])
        for interval, value in zip(("1min", "5min", "15min"), load, strict=True):
            family.add_metric([interval], value)
        yield family
    yield CounterMetricFamily(
        "apache_accesses", "Current total apache accesses (*)", value=summary["accesses"]
    )
    yield CounterMetricFamily(
        "apache_sent_kilobytes",
        "Current total kbytes sent (*)",
        value=summary["bytes_served"] / 1024,
    )
    uptime = float(snapshot.get("running_time") or 0)
    yield CounterMetricFamily(
        "apache_uptime_seconds", "Current uptime in seconds (*)", value=uptime
    )
    if cpu is not None:
        times = CounterMetricFamily("apache_cpu_time_ms", "Apache CPU time", labels=["type"])
        times.add_metric(["user"], 1000 * cpu.user)
        times.add_metric(["system"], 1000 * cpu.system)
        yield times
        load_percent = 100 * (cpu.user + cpu.system) / uptime if uptime > 0 else 0.0
        yield GaugeMetricFamily(
            "apache_cpuload",
            "The current percentage CPU used by each worker and in total by all workers"
            " combined (*)",
            value=load_percent,
        )
    workers = GaugeMetricFamily("apache_workers", "Apache worker statuses", labels=["state"])
    workers.add_metric(["busy"], summary["busy"])
    workers.add_metric(["idle"], summary["idle"])
    yield workers
    processes = GaugeMetricFamily("apache_processes", "Apache process count", labels=["state"])
    live = [p for p in snapshot.get("processes") or () if p.get("pid")]
    processes.add_metric(["all"], len(live))
    processes.add_metric(["stopping"], sum(1 for p in live if p.get("quiescing")))
    yield processes
    scoreboard = GaugeMetricFamily(
        "apache_scoreboard", "Apache scoreboard statuses", labels=["state"]
    )
    for state, label in SCOREBOARD_LABELS.items():
        scoreboard.add_metric([label], summary["workers"][state])
    yield scoreboard
    held = GaugeMetricFamily(
        "mod_wsgi_ws_sidecar_websockets",
        "Open WebSockets of a sidecar: the busy Apache workers on its route",
        labels=["sidecar"],
    )
    for route in routes:
        held.add_metric([route.name], websockets.get(route.name, 0))
    yield held


# --- I/O: /proc, the load average, the apache module ---------------------------------------


def apache_cpu(snapshot: Mapping[str, Any], parent: int) -> CpuTimes | None:
    """The CPU times of Apache's parent (this daemon process's parent) and of
    the children on the scoreboard; None where /proc cannot tell."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    try:
        with open(f"/proc/{parent}/stat", encoding="ascii") as fh:
            utime, stime, cutime, cstime = parse_proc_stat(fh.read(), ticks)
    except (OSError, ValueError):
        return None
    user, system = utime + cutime, stime + cstime
    for proc in snapshot.get("processes") or ():
        pid = proc.get("pid")
        if not pid:
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                utime, stime, _cutime, _cstime = parse_proc_stat(fh.read(), ticks)
        except (OSError, ValueError):
            continue  # ended since the reading
        user, system = user + utime, system + stime
    return CpuTimes(user, system)


def apache_server() -> dict[str, str]:
    """Apache's description ("Apache/2.4.62 (Debian)") and MPM, from the
    module mod_wsgi gives its daemon processes; empty outside Apache."""
    try:
        import apache  # type: ignore[import-not-found]
    except ImportError:
        return {}
    return {"description": str(apache.description), "mpm": str(apache.mpm_name)}


class ApacheCollector:
    """A prometheus-client collector over the dashboard's latest reading."""

    def __init__(
        self,
        latest: Callable[[], Mapping[str, Any] | None],
        routes: Sequence[sidecar_trends.Route],
        summarise: Callable[[Mapping[str, Any]], Mapping[str, Any]],
        active_workers: Callable[[Mapping[str, Any]], Sequence[Mapping[str, Any]]],
    ) -> None:
        self._latest, self._routes = latest, tuple(routes)
        self._summarise, self._active_workers = summarise, active_workers
        self._server = apache_server()

    def collect(self) -> Iterator[Any]:
        snapshot = self._latest()
        summary = websockets = cpu = load = None
        if snapshot is not None:
            summary = self._summarise(snapshot)
            workers = self._active_workers(snapshot)
            websockets = sidecar_trends.websockets_by_sidecar(workers, self._routes)
            cpu = apache_cpu(snapshot, os.getppid())
            load = os.getloadavg()
        yield from apache_families(
            snapshot, summary, websockets or {}, self._routes, self._server, load, cpu
        )


# --- the push channel's Redis, as its push sidecars read it -------------------------------

# Each push sidecar writes what it last read of its Redis here (redis-NAME.json
# in the metrics directory), every REDIS_STATS_INTERVAL; older is stale.
REDIS_STATS_GLOB = "redis-*.json"
REDIS_STATS_FRESH = 30.0


def write_redis_stats(
    directory: str, sidecar: str, used_memory: int, maxmemory: int, channels: int, now: float
) -> None:
    """Replaces the sidecar's file at once: a reader never sees half of it."""
    path = os.path.join(directory, f"redis-{sidecar}.json")
    stats = {"sidecar": sidecar, "time": now, "used_memory": used_memory}
    stats |= {"maxmemory": maxmemory, "channels": channels}
    part = f"{path}.{os.getpid()}.part"
    with open(part, "w", encoding="utf-8") as fh:
        json.dump(stats, fh)
    os.replace(part, path)


def read_redis_stats(directory: str, now: float) -> list[dict[str, Any]]:
    """The fresh files of every push sidecar, by name; unreadable ones left out."""
    found = []
    for path in sorted(glob.glob(os.path.join(directory, REDIS_STATS_GLOB))):
        try:
            with open(path, encoding="utf-8") as fh:
                stats = json.load(fh)
            fresh = 0 <= now - float(stats["time"]) <= REDIS_STATS_FRESH
            figures = [int(stats[k]) for k in ("used_memory", "maxmemory", "channels")]
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if fresh:
            used, most, channels = figures
            found.append(
                {"name": str(stats["sidecar"]), "used_memory": used, "maxmemory": most}
                | {"channels": channels}
            )
    return found


def redis_families(stats: Sequence[Mapping[str, Any]]) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    for name, key, text in (
        ("push_redis_memory_bytes", "used_memory", "Memory the push channel's Redis uses"),
        (
            "push_redis_maxmemory_bytes",
            "maxmemory",
            "Memory the push channel's Redis may use before it refuses messages (0: no limit)",
        ),
        ("push_channels", "channels", "Channels the push channel's Redis holds (a stream each)"),
    ):
        family = GaugeMetricFamily(f"mod_wsgi_ws_sidecar_{name}", text, labels=["sidecar"])
        for one in stats:
            family.add_metric([one["name"]], one[key])
        yield family


class RedisStatsCollector:
    """A prometheus-client collector over the push sidecars' files."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Any]:
        yield from redis_families(read_redis_stats(self._directory, time.time()))


# --- what each built-in sidecar counts -----------------------------------------------------


def drop_reason(problem: str) -> str:
    """The label of a client dropped for `problem` (sidecar.queue_frame's words)."""
    return FAILED if problem.startswith("send failed") else SLOW


class Metrics:
    """One sidecar process's counters, and (for the dashboard) the endpoint's text."""

    def __init__(self, sidecar: str, directory: str | None, push: bool = False) -> None:
        import prometheus_client
        from prometheus_client import multiprocess

        self.directory = directory
        self._client = prometheus_client
        # Counters registered here are exposed directly without a directory;
        # with one, their values live in its files and the endpoint reads those.
        self._own = prometheus_client.CollectorRegistry()
        self.registry = prometheus_client.CollectorRegistry()
        if directory is None:
            self._own = self.registry
        else:
            multiprocess.MultiProcessCollector(self.registry, path=directory)
        labels = ["sidecar"]

        def counter(name: str, text: str, extra: Sequence[str] = ()) -> Any:
            return prometheus_client.Counter(name, text, [*labels, *extra], registry=self._own)

        self.accepted = counter(
            "mod_wsgi_ws_sidecar_websockets_accepted", "WebSockets a sidecar accepted"
        ).labels(sidecar)
        refused = counter(
            "mod_wsgi_ws_sidecar_websockets_refused",
            "WebSocket upgrades a sidecar refused: at its cap, or from another site",
            ["reason"],
        )
        self.refused_at_cap = refused.labels(sidecar, "cap")
        self.refused_origin = refused.labels(sidecar, "origin")
        dropped = counter(
            "mod_wsgi_ws_sidecar_clients_dropped",
            "Clients a sidecar dropped: too slow to read what it sent, or a failed send",
            ["reason"],
        )
        self.dropped = {reason: dropped.labels(sidecar, reason) for reason in (SLOW, FAILED)}
        self.fanout = prometheus_client.Histogram(
            "mod_wsgi_ws_sidecar_fanout_seconds",
            "From a message's arrival (a push channel's: Redis taking it in; the dashboard's:"
            " the scoreboard reading) to its frame queued on every subscriber's socket",
            labels,
            buckets=FANOUT_BUCKETS,
            registry=self._own,
        ).labels(sidecar)
        if push:  # a push sidecar's only
            self.messages = counter(
                "mod_wsgi_ws_sidecar_push_messages", "Messages a push sidecar relayed from Redis"
            ).labels(sidecar)
            self.deliveries = counter(
                "mod_wsgi_ws_sidecar_push_deliveries",
                "Frames of messages a push sidecar queued for its subscribers",
            ).labels(sidecar)

    def dropped_for(self, problem: str) -> None:
        self.dropped[drop_reason(problem)].inc()

    def add_collector(self, collector: Any) -> None:
        self.registry.register(collector)

    def exposition(self) -> tuple[bytes, str]:
        """The endpoint's body and content type (Prometheus text format 0.0.4)."""
        return self._client.generate_latest(self.registry), CONTENT_TYPE


def prune_dead(directory: str) -> None:
    """Removes the counter files of sidecar processes that ended (an earlier
    Apache start's): their counters restart, as Apache's own do."""
    for path in glob.glob(os.path.join(directory, "*.db")):
        match = _COUNTER_FILE.search(path)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            os.unlink(path)
        except PermissionError:
            pass  # alive, as another user


def open_metrics(sidecar: str, directory: str | None, push: bool = False) -> Metrics:
    """The counters of this process, shared through `directory` with the
    host's other built-in sidecars (None: this process only)."""
    if directory is not None:
        chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if "prometheus_client" in sys.modules and chosen != directory:
            raise RuntimeError(
                "prometheus_client was imported before its directory was set:"
                " the counters would not reach the dashboard"
            )
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return Metrics(sidecar, directory, push)
