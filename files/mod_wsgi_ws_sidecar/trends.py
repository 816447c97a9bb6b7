"""What the dashboard and its Prometheus endpoint read beyond one scoreboard
snapshot: rates between ticks, open WebSockets per sidecar against its cap,
a per-virtual-host breakdown, and the last ten minutes.

Open WebSockets are counted where Apache holds them: each is one busy worker
on a sidecar's WebSocket path (at a mount) or virtual host, so a user's own
sidecar is counted as well as the built-in ones. Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
import math
import posixpath
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

# Ten minutes of ticks, sent whole to a page when it connects.
HISTORY_SECONDS = 600
# A sidecar holding this share of its max_clients or more is shown as near its cap.
NEAR_CAP = 0.9
# Bounds every frame on a server of many virtual hosts; the rest are counted.
MAX_LISTED_VHOSTS = 10
# The states of a worker that may hold an open WebSocket (a proxied tunnel
# stays in the state of the request that opened it).
TUNNEL_STATES = frozenset({"busy_read", "busy_write"})
REDACTED = "?[redacted]"


@dataclass(frozen=True)
class Route:
    """One sidecar, as the dashboard finds its WebSockets on the scoreboard."""

    name: str
    max_clients: int
    path: str = ""  # the WebSocket path prefix of a sidecar at a mount
    host: str = ""  # the virtual host (lower case) of a sidecar at one

    def holds(self, vhost: str, path: str) -> bool:
        if self.host:
            return vhost == self.host
        return bool(self.path) and path.startswith(self.path)


def parse_routes(data: Any) -> tuple[Route, ...]:
    """The `sidecars` list of a dashboard's JSON file; ValueError names the bad key."""
    if not isinstance(data, list):
        raise ValueError("'sidecars' must be a list")
    routes = []
    for i, item in enumerate(data):
        at = f"'sidecars[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "max_clients", "path", "host"}:
            raise ValueError(f"{at}' must be an object of name, max_clients, and path or host")
        name, cap = item.get("name"), item.get("max_clients")
        path, host = item.get("path", ""), item.get("host", "")
        if not isinstance(name, str) or not name.isprintable() or not name:
            raise ValueError(f"{at}.name' must be a non-empty printable string")
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"{at}.max_clients' must be a positive integer, got {cap!r}")
        if not isinstance(path, str) or not isinstance(host, str) or bool(path) == bool(host):
            raise ValueError(f"{at}' must give either a path or a host")
        if path and not path.startswith("/"):
            raise ValueError(f"{at}.path' must start with /, got {path!r}")
        routes.append(Route(name, cap, path, host.lower()))
    return tuple(routes)


def redact_query(request: str) -> str:
    """A scoreboard request line with its query string hidden: it may carry
    any application's tokens, session ids or e-mail addresses."""
    start = request.find("?")
    if start < 0:
        return request
    end = request.find(" ", start)
    return request[:start] + REDACTED + ("" if end < 0 else request[end:])


# A busy scoreboard repeats a few request lines and virtual hosts thousands
# of times (every WebSocket's worker shows the same "GET /metrics/ws"): each
# distinct one is parsed once, not once per worker per tick.
_SEEN_STRINGS = 4096


@functools.lru_cache(maxsize=_SEEN_STRINGS)
def request_path(request: str) -> str:
    """The path of a scoreboard request line ("GET /push/ws HTTP/1.1") as
    Apache matches it to a location: percent-decoded, dot segments resolved
    and slashes merged, so "/x/../metrics//%77s" counts as "/metrics/ws"."""
    parts = request.split()
    target = parts[1] if len(parts) > 1 else ""
    # "//a/b" is a path here (origin form), not a host as urlsplit reads it.
    path = unquote(target.split("?", 1)[0] if target.startswith("/") else urlsplit(target).path)
    if not path.startswith("/"):
        return path
    # normpath keeps a leading "//" (POSIX leaves it implementation-defined).
    return "/" + posixpath.normpath(path).lstrip("/")


@functools.lru_cache(maxsize=_SEEN_STRINGS)
def vhost_name(vhost: str) -> str:
    """A scoreboard vhost ("name:port") without its port, in lower case."""
    return vhost.lower().rsplit(":", 1)[0]


def route_of(worker: Mapping[str, Any], routes: Sequence[Route]) -> Route | None:
    """The sidecar whose WebSocket a worker (a row of sidecar.active_workers) holds."""
    if worker.get("state") not in TUNNEL_STATES:
        return None
    vhost = vhost_name(str(worker.get("vhost", "")))
    path = request_path(str(worker.get("request", "")))
    return next((r for r in routes if r.holds(vhost, path)), None)


def websockets_by_sidecar(
    workers: Iterable[Mapping[str, Any]], routes: Sequence[Route]
) -> dict[str, int]:
    return _count_held([route_of(w, routes) for w in workers], routes)


def _count_held(held: Iterable[Route | None], routes: Sequence[Route]) -> dict[str, int]:
    """WebSockets per sidecar, from each worker's route (None: not one)."""
    counts = dict.fromkeys((r.name for r in routes), 0)
    for route in held:
        if route is not None:
            counts[route.name] += 1
    return counts


def near_cap(websockets: int, max_clients: int) -> bool:
    return websockets >= math.ceil(NEAR_CAP * max_clients)


def _rate(now: int, before: int, seconds: float) -> float | None:
    # After a restart Apache's counters start again: no rate that tick.
    if seconds <= 0 or now < before:
        return None
    return round((now - before) / seconds, 1)


@dataclass
class _Reading:
    time: float
    accesses: int
    bytes_served: int
    slots: dict[tuple[int, int, int], int]  # (process index, pid, thread) -> access_count


def _slot_accesses(snapshot: Mapping[str, Any]) -> tuple[dict, dict]:
    """Each worker slot's access_count, and the virtual host it last served."""
    counts, vhosts = {}, {}
    for i, proc in enumerate(snapshot.get("processes") or ()):
        pid = proc.get("pid") or 0
        if not pid:
            continue
        for j, worker in enumerate(proc.get("workers") or ()):
            key = (i, pid, j)
            counts[key] = int(worker.get("access_count") or 0)
            vhosts[key] = str(worker.get("vhost") or "")
    return counts, vhosts


class Trends:
    """Figures that need more than one tick, and the ring of the last ten minutes."""

    def __init__(self, routes: Sequence[Route], interval: float) -> None:
        self.routes = tuple(routes)
        self.interval = interval
        self.points: deque[list[Any]] = deque(maxlen=math.ceil(HISTORY_SECONDS / interval) + 1)
        self._previous: _Reading | None = None

    def tick(
        self,
        snapshot: Mapping[str, Any],
        summary: Mapping[str, Any],
        workers: Sequence[Mapping[str, Any]],
        now: float,
    ) -> dict[str, Any]:
        """One reading's rates, sidecars and virtual hosts, for the frame;
        the reading is added to the history."""
        slots, slot_vhosts = _slot_accesses(snapshot)
        accesses, sent = int(summary["accesses"]), int(summary["bytes_served"])
        before = self._previous
        rps = bps = None
        served: dict[str, int] = {}  # virtual host -> requests since the last tick
        if before is not None:
            seconds = now - before.time
            rps, bps = (
                _rate(accesses, before.accesses, seconds),
                _rate(sent, before.bytes_served, seconds),
            )
            for key, count in slots.items():
                # A slot of the same process whose count went up served that many
                # requests, the last of them for the virtual host it shows now.
                delta = count - before.slots.get(key, count)
                if delta > 0 and slot_vhosts[key]:
                    served[slot_vhosts[key]] = served.get(slot_vhosts[key], 0) + delta
        self._previous = _Reading(now, accesses, sent, slots)
        # Each worker's sidecar, worked out once for both counts below.
        held = [route_of(w, self.routes) for w in workers]
        open_now = _count_held(held, self.routes)
        sidecars = [
            {
                "name": r.name,
                "websockets": open_now[r.name],
                "max_clients": r.max_clients,
                "near_cap": near_cap(open_now[r.name], r.max_clients),
            }
            for r in self.routes
        ]
        vhosts = self._vhosts(workers, held, served, now - before.time if before else 0.0)
        self.points.append(
            [round(now, 3), summary["busy"], rps, bps, [s["websockets"] for s in sidecars]]
        )
        return {
            "rates": {"rps": rps, "bps": bps},
            "sidecars": sidecars,
            "vhosts": vhosts[:MAX_LISTED_VHOSTS],
            "vhosts_omitted": max(0, len(vhosts) - MAX_LISTED_VHOSTS),
        }

    def _vhosts(
        self,
        workers: Sequence[Mapping[str, Any]],
        held: Sequence[Route | None],
        served: Mapping[str, int],
        seconds: float,
    ) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}

        def row(vhost: str) -> dict[str, Any]:
            return rows.setdefault(vhost, {"vhost": vhost, "busy": 0, "websockets": 0, "rps": 0.0})

        for worker, route in zip(workers, held, strict=True):
            vhost = str(worker.get("vhost") or "")
            if not vhost or worker.get("state") in ("starting", "idle_kill", "unknown"):
                continue
            row(vhost)["busy"] += 1
            if route is not None:
                row(vhost)["websockets"] += 1
        for vhost, count in served.items():
            if seconds > 0:
                row(vhost)["rps"] = round(count / seconds, 1)
        return sorted(rows.values(), key=lambda r: (-r["busy"], -r["rps"], r["vhost"]))

    def history(self) -> dict[str, Any]:
        """The frame a page gets first: every point of the last ten minutes,
        oldest first, each [time, busy, requests/s, bytes/s, [WebSockets per sidecar]]."""
        return {
            "type": "history",
            "interval": self.interval,
            "span": HISTORY_SECONDS,
            "sidecars": [{"name": r.name, "max_clients": r.max_clients} for r in self.routes],
            "points": list(self.points),
        }
