"""Sizes Apache's mpm_event for WebSocket tunnels next to ordinary HTTP requests.

Every released Apache 2.4 runs a proxied WebSocket's tunnel inside one worker
thread for the connection's whole life, so WebSocket clients and HTTP requests
draw from the same threads. Apache gets threads for the HTTP load plus a
quarter more WebSockets than the sidecars admit (max_clients, which they
enforce), so HTTP always finds a thread.

Each sidecar's ProxyPass pool (max=, per child) is its max_clients, up to a
whole child. It is not an even share: measured, new connections do not spread
evenly over the children (a burst lands on one), and a child whose pool is
full answers 503 even when the others have room. A child whose threads are all
busy stops accepting, so a child full of tunnels simply leaves new connections
to the others.

A sidecar of several processes holds a descriptor per client in the process
the kernel gave the connection to (SO_REUSEPORT spreads them by a hash of
the addresses, nearly but not exactly evenly): the open-files limit, the same
for every process Apache starts, covers each process's share and a margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# Large children keep the number of processes (each with its own Python
# interpreter from mod_wsgi) small; 500 threads per child is measured to work.
MAX_THREADS_PER_CHILD = 500
MIN_THREADS_PER_CHILD = 25
# Two children at least, so one crashing child never takes the whole site.
MIN_CHILDREN = 2
# Threads for a quarter more WebSockets than planned: refusing the excess
# takes a thread for a moment too.
HEADROOM = 1.25
# Scoreboard slots for children still finishing after a graceful reload.
GRACEFUL_SHARE = 0.25
# mpm_event's compiled-in ceiling for ServerLimit.
SERVER_LIMIT_MAX = 20000
# Descriptors beyond the connections: listeners, logs, pipes, libraries.
FD_MARGIN = 1024
# Never below what Debian's apachectl would set.
FD_MIN = 8192
# What a tunnelled WebSocket holds in its Apache child: the client's socket,
# the sidecar's, and the tunnel's own poll set (an epoll descriptor; measured).
FDS_PER_TUNNEL = 3
# A process of a sidecar of several may get this much more than an even share.
SPREAD = 1.1


def mpm_sizing(http: int, sidecars: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mpm_event settings, per-child pools and open-files limit for a load.

    http: peak concurrent HTTP requests; sidecars: items with `name`,
    `max_clients` (that sidecar's peak WebSocket clients) and `processes`
    (1 when left out). `problem` is empty when Apache can honour the load,
    else it says why not.
    """
    caps = {str(s["name"]): int(s["max_clients"]) for s in sidecars}
    shares = [process_share(int(s["max_clients"]), int(s.get("processes", 1))) for s in sidecars]
    websockets = sum(caps.values())
    workers = http + math.ceil(websockets * HEADROOM)
    threads = min(MAX_THREADS_PER_CHILD, max(MIN_THREADS_PER_CHILD, -(-workers // MIN_CHILDREN)))
    children = max(MIN_CHILDREN, -(-workers // threads))
    server_limit = children + math.ceil(children * GRACEFUL_SHARE)
    problem = ""
    if server_limit > SERVER_LIMIT_MAX:
        problem = (
            f"{http} HTTP requests and {websockets} WebSocket clients need {server_limit}"
            f" child processes of {threads} threads; mpm_event allows {SERVER_LIMIT_MAX}"
        )
    return {
        "threads_per_child": threads,
        "children": children,
        "server_limit": server_limit,
        "max_request_workers": children * threads,
        "pools": {name: min(cap, threads) for name, cap in caps.items()},
        "open_files": max(
            FD_MIN, max(shares, default=0) + FD_MARGIN, FDS_PER_TUNNEL * threads + FD_MARGIN
        ),
        "problem": problem,
    }


def process_share(max_clients: int, processes: int) -> int:
    """The clients one process of a sidecar may hold: all of them with one process."""
    if processes <= 1:
        return max_clients
    return min(max_clients, math.ceil(max_clients * SPREAD / processes))
