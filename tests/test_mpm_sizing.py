"""The role's mpm_event sizing (roles/mod_wsgi_ws_sidecar/filter_plugins/mpm_sizing.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent / "roles/mod_wsgi_ws_sidecar/filter_plugins")
)
import mpm_sizing

LOADS = [
    (150, [500]),  # the role's defaults
    (150, [10000]),  # the benchmark's capacity
    (150, [1000, 200]),
    (1, [1]),
    (10, [1] * 30),  # many small sidecars
    (5000, [50]),  # mostly HTTP
    (150, [20, 50]),  # the own-sidecar example
]


def size(http: int, caps: list[int]) -> dict[str, Any]:
    return mpm_sizing.mpm_sizing(
        http, [{"name": f"s{i}", "max_clients": n} for i, n in enumerate(caps)]
    )


@pytest.mark.parametrize(("http", "caps"), LOADS)
def test_sizing_keeps_every_promise(http: int, caps: list[int]) -> None:
    mpm = size(http, caps)
    assert mpm["problem"] == ""
    threads, children = mpm["threads_per_child"], mpm["children"]
    assert mpm_sizing.MIN_THREADS_PER_CHILD <= threads <= mpm_sizing.MAX_THREADS_PER_CHILD
    assert children >= mpm_sizing.MIN_CHILDREN
    assert mpm["max_request_workers"] == threads * children
    assert children < mpm["server_limit"] <= mpm_sizing.SERVER_LIMIT_MAX
    # Apache has threads for a quarter more WebSockets than planned...
    assert threads * children >= http + sum(caps) * mpm_sizing.POOL_HEADROOM
    # ...each sidecar's pools over all children admit all its clients...
    for i, cap in enumerate(caps):
        assert mpm["pools"][f"s{i}"] * children >= cap
    # ...and what they leave in every child serves its share of HTTP.
    assert mpm["http_threads_per_child"] == threads - sum(mpm["pools"].values())
    assert mpm["http_threads_per_child"] >= math.ceil(http / children)
    # A sidecar holds a socket per client; an Apache child two per tunnel.
    assert mpm["open_files"] >= max(caps) + mpm_sizing.FD_MARGIN
    assert mpm["open_files"] >= 2 * threads + mpm_sizing.FD_MARGIN


def test_default_sizing() -> None:
    mpm = size(150, [500])
    assert (mpm["threads_per_child"], mpm["children"], mpm["server_limit"]) == (500, 2, 3)
    assert (mpm["pools"], mpm["http_threads_per_child"], mpm["open_files"]) == (
        {"s0": 425},
        75,
        8192,
    )


def test_one_child_can_hold_every_client_where_that_fits() -> None:
    # Connections do not spread evenly over the children: where the threads
    # allow, each child's pool takes every client, so none is refused early.
    mpm = size(150, [20, 50])
    assert mpm["pools"] == {"s0": 20, "s1": 50}
    assert mpm["http_threads_per_child"] >= 75


def test_ten_thousand_websockets_fit_under_the_open_files_limit() -> None:
    mpm = size(150, [10000])
    assert mpm["threads_per_child"] == 500
    assert mpm["children"] == math.ceil((150 + 12500) / 500)
    assert mpm["open_files"] < 20000  # the container hosts' hard limit (TESTBED)


def test_load_beyond_mpm_event_is_refused() -> None:
    mpm = size(150, [20_000_000])
    assert "need more than mpm_event's 20000 child processes" in mpm["problem"]


def test_filter_is_registered_under_the_roles_name() -> None:
    filters = mpm_sizing.FilterModule().filters()
    assert filters == {"mod_wsgi_ws_sidecar_mpm_sizing": mpm_sizing.mpm_sizing}
