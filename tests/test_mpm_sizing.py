"""The role's mpm_event sizing (plugins/module_utils/sizing.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils import sizing

LOADS = [
    (150, [500]),  # the role's defaults
    (150, [10000]),  # the benchmark's capacity
    (150, [1000, 200]),
    (1, [1]),
    (10, [1] * 30),  # many small sidecars
    (5000, [50]),  # mostly HTTP
    (150, [20, 50]),  # the own-sidecar example
    (150, [300, 600, 900]),
]


def size(http: int, caps: list[int]) -> dict[str, Any]:
    return sizing.mpm_sizing(
        http, [{"name": f"s{i}", "max_clients": n} for i, n in enumerate(caps)]
    )


@pytest.mark.parametrize(("http", "caps"), LOADS)
def test_sizing_keeps_every_promise(http: int, caps: list[int]) -> None:
    mpm = size(http, caps)
    assert mpm["problem"] == ""
    threads, children = mpm["threads_per_child"], mpm["children"]
    assert sizing.MIN_THREADS_PER_CHILD <= threads <= sizing.MAX_THREADS_PER_CHILD
    assert children >= sizing.MIN_CHILDREN
    assert mpm["max_request_workers"] == threads * children
    assert children < mpm["server_limit"] <= sizing.SERVER_LIMIT_MAX
    # Threads for HTTP and a quarter more WebSockets than the sidecars admit...
    assert threads * children >= http + sum(caps) * sizing.HEADROOM
    # ...and a child may fill with one sidecar's tunnels, up to its cap.
    assert mpm["pools"] == {f"s{i}": min(cap, threads) for i, cap in enumerate(caps)}
    # A sidecar holds a socket per client; an Apache child three descriptors per tunnel.
    assert mpm["open_files"] >= max(caps) + sizing.FD_MARGIN
    assert mpm["open_files"] >= 3 * threads + sizing.FD_MARGIN


def test_default_sizing() -> None:
    mpm = size(150, [500])
    assert (mpm["threads_per_child"], mpm["children"], mpm["server_limit"]) == (388, 2, 3)
    assert (mpm["pools"], mpm["open_files"]) == ({"s0": 388}, 8192)


def test_ten_thousand_websockets_fit_under_the_open_files_limit() -> None:
    mpm = size(150, [10000])
    assert mpm["threads_per_child"] == 500
    assert mpm["children"] == math.ceil((150 + 12500) / 500)
    assert mpm["open_files"] < 20000  # the container hosts' hard limit (TESTBED)


def test_load_beyond_mpm_event_is_refused() -> None:
    mpm = size(150, [20_000_000])
    assert "mpm_event allows 20000" in mpm["problem"]


def test_a_sidecar_of_several_processes_needs_files_for_its_share() -> None:
    one = sizing.mpm_sizing(150, [{"name": "s", "max_clients": 20000}])
    two = sizing.mpm_sizing(150, [{"name": "s", "max_clients": 20000, "processes": 2}])
    assert one["open_files"] == 20000 + sizing.FD_MARGIN  # over these hosts' 20,000
    assert two["open_files"] == 11000 + sizing.FD_MARGIN  # half, and a tenth more
    # Apache's side is the same: every WebSocket still holds a thread.
    assert (one["children"], one["threads_per_child"]) == (two["children"], 500)


@pytest.mark.parametrize(("cap", "processes", "share"), [(10, 1, 10), (10, 4, 3), (3, 8, 1)])
def test_a_process_share_is_never_above_the_cap(cap: int, processes: int, share: int) -> None:
    assert sizing.process_share(cap, processes) == share
