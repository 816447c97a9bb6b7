"""The Prometheus endpoint (files/sidecar_metrics.py): apache_exporter's
names from recorded scoreboards, read back with prometheus-client's own
parser; the endpoint and its counters over a real socket; and the counters
of two processes added up through one directory, as the dashboard and a push
sidecar share them on a host. promtool and a Prometheus server scrape it in
molecule/default."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import FILES_DIR
from mod_wsgi_ws_sidecar import dashboard as sidecar
from mod_wsgi_ws_sidecar import metrics as sidecar_metrics
from mod_wsgi_ws_sidecar import trends as sidecar_trends
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

ROUTES = (
    sidecar_trends.Route("metrics-sidecar", 10, path="/metrics/ws"),
    sidecar_trends.Route("push", 50, path="/push/ws"),
)
SERVER = {"description": "Apache/2.4.62 (Debian)", "mpm": "event"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from Prometheus text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exposed(snapshot: dict | None, **options: Any) -> dict:
    summary = sidecar.summarise(snapshot) if snapshot is not None else None
    workers = sidecar.active_workers(snapshot) if snapshot is not None else []
    families = list(
        sidecar_metrics.apache_families(
            snapshot,
            summary,
            sidecar_trends.websockets_by_sidecar(workers, ROUTES),
            ROUTES,
            options.get("server", SERVER),
            options.get("load", (0.5, 0.25, 0.125)),
            options.get("cpu", sidecar_metrics.CpuTimes(3.0, 1.5)),
        )
    )

    class Fixed:
        def collect(self) -> list:
            return families

    registry = CollectorRegistry()
    registry.register(Fixed())
    return samples(generate_latest(registry).decode())


def test_apache_exporters_names_from_a_recorded_scoreboard(scoreboard: dict) -> None:
    got = exposed(scoreboard)
    summary = sidecar.summarise(scoreboard)
    assert got[("apache_up", ())] == 1
    assert got[("apache_info", (("mpm", "event"), ("version", "Apache/2.4.62 (Debian)")))] == 1
    assert got[("apache_version", ())] == 2.04062
    assert got[("apache_generation", (("type", "mpm"),))] == scoreboard["running_generation"]
    assert got[("apache_accesses_total", ())] == summary["accesses"]
    assert got[("apache_sent_kilobytes_total", ())] == summary["bytes_served"] / 1024
    assert got[("apache_uptime_seconds_total", ())] == scoreboard["running_time"]
    assert got[("apache_load", (("interval", "5min"),))] == 0.25
    assert got[("apache_cpu_time_ms_total", (("type", "user"),))] == 3000
    assert got[("apache_cpu_time_ms_total", (("type", "system"),))] == 1500
    assert got[("apache_cpuload", ())] == pytest.approx(450 / scoreboard["running_time"])
    assert got[("apache_workers", (("state", "busy"),))] == summary["busy"]
    assert got[("apache_workers", (("state", "idle"),))] == summary["idle"]
    live = [p for p in scoreboard["processes"] if p["pid"]]
    assert got[("apache_processes", (("state", "all"),))] == len(live)
    assert got[("apache_processes", (("state", "stopping"),))] == 0
    states = {
        dict(labels)["state"]: v for (name, labels), v in got.items() if name == "apache_scoreboard"
    }
    assert set(states) == set(sidecar_metrics.SCOREBOARD_LABELS.values())
    assert sum(states.values()) == summary["slots"]
    assert states["reply"] == summary["workers"]["busy_write"]
    assert states["open_slot"] == summary["workers"]["dead"]
    # Recorded with one dashboard WebSocket open.
    assert got[("mod_wsgi_ws_sidecar_websockets", (("sidecar", "metrics-sidecar"),))] == 1
    assert got[("mod_wsgi_ws_sidecar_websockets", (("sidecar", "push"),))] == 0
    assert got[("mod_wsgi_ws_sidecar_websockets_max", (("sidecar", "push"),))] == 50


def test_an_unreadable_scoreboard_is_apache_up_0_and_nothing_of_apache() -> None:
    got = exposed(None)
    assert got[("apache_up", ())] == 0
    assert not [name for name, _ in got if name.startswith("apache_") and name != "apache_up"]
    assert got[("mod_wsgi_ws_sidecar_websockets_max", (("sidecar", "metrics-sidecar"),))] == 10


def test_without_proc_or_the_apache_module_those_figures_are_left_out(synthetic: dict) -> None:
    got = exposed(synthetic, server={}, load=None, cpu=None)
    names = {name for name, _ in got}
    assert {
        "apache_cpuload",
        "apache_cpu_time_ms_total",
        "apache_load",
        "apache_version",
    }.isdisjoint(names)
    assert got[("apache_info", (("mpm", ""), ("version", "")))] == 1
    assert got[("apache_accesses_total", ())] == 55


@pytest.mark.parametrize(
    ("description", "number"),
    [
        ("Apache/2.4.62 (Debian)", 2.04062),
        ("Apache/2.4.65 (Debian) mod_wsgi/5.0.2 Python/3.13", 2.04065),
        ("Apache", None),
        ("", None),
    ],
)
def test_apache_version_as_apache_exporter_makes_it(description: str, number: float) -> None:
    assert sidecar_metrics.server_version(description) == number


def test_proc_stat_with_a_command_name_of_spaces_and_parentheses() -> None:
    line = "4058 (apache2 (x) y) S 4057 4057 4057 0 -1 4194624 9 0 0 0 250 50 7 3 20 0 1 0"
    assert sidecar_metrics.parse_proc_stat(line, 100) == (2.5, 0.5, 0.07, 0.03)


def test_this_hosts_apache_cpu_is_read_from_proc(synthetic: dict) -> None:
    # This test process stands in for Apache's parent; the recorded pids are long gone.
    cpu = sidecar_metrics.apache_cpu(synthetic, os.getpid())
    assert cpu is not None and cpu.user > 0
    assert sidecar_metrics.apache_cpu(synthetic, 2**22 + 1) is None  # no such process


@pytest.mark.parametrize(
    ("problem", "reason"),
    [
        ("300000 bytes still unsent", "slow"),
        ("data unsent for longer than 1.0s", "slow"),
        ("send failed: ConnectionResetError()", "failed"),
    ],
)
def test_why_a_client_was_dropped(problem: str, reason: str) -> None:
    assert sidecar_metrics.drop_reason(problem) == reason


def test_the_endpoint_and_the_dashboards_counters(synthetic: dict) -> None:
    config = sidecar.Config(
        name="metrics-sidecar", poll_interval=0.05, max_clients=1, routes=ROUTES
    )

    async def scenario() -> dict:
        sc = sidecar.Sidecar(config, lambda: synthetic)
        async with TestClient(TestServer(sc.app)) as client:
            while sc.snapshot is None:
                await asyncio.sleep(0.01)
            ws = await client.ws_connect("/ws")
            for refused in ({}, {"Origin": "https://evil.example"}):
                with pytest.raises(aiohttp.WSServerHandshakeError):
                    await client.ws_connect("/ws", headers=refused)
            # The latest, sent on connect, then two ticks fanned out to the one client:
            # a tick's fan-out is observed before the loop runs on, so before its
            # frame can reach this client in the same loop.
            for _ in range(3):
                await ws.receive_str()
            answer = await client.get("/metrics")
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await answer.text()
            await ws.close()
            return samples(text)

    got = asyncio.run(asyncio.wait_for(scenario(), 15))
    me = ("sidecar", "metrics-sidecar")
    assert got[("apache_up", ())] == 1
    assert got[("mod_wsgi_ws_sidecar_websockets_accepted_total", (me,))] == 1
    assert got[("mod_wsgi_ws_sidecar_websockets_refused_total", (("reason", "cap"), me))] == 1
    assert got[("mod_wsgi_ws_sidecar_websockets_refused_total", (("reason", "origin"), me))] == 1
    assert got[("mod_wsgi_ws_sidecar_fanout_seconds_count", (me,))] >= 2
    assert got[("mod_wsgi_ws_sidecar_clients_dropped_total", (("reason", "slow"), me))] == 0
    # The push channel's counters are a push sidecar's only.
    assert not [name for name, _ in got if name.startswith("mod_wsgi_ws_sidecar_push_")]


# Two processes, one directory: what a push sidecar counts reaches the dashboard's endpoint.
PUSH_PROCESS = """
import sys
sys.path.insert(0, {files!r})
from mod_wsgi_ws_sidecar import metrics as sidecar_metrics
metrics = sidecar_metrics.open_metrics("push", {directory!r}, push=True)
metrics.messages.inc(3)
metrics.deliveries.inc(30)
metrics.fanout.observe(0.004)
"""
DASHBOARD_PROCESS = """
import sys
sys.path.insert(0, {files!r})
from mod_wsgi_ws_sidecar import metrics as sidecar_metrics
if {prune!r}:
    sidecar_metrics.prune_dead({directory!r})
metrics = sidecar_metrics.open_metrics("metrics-sidecar", {directory!r})
metrics.accepted.inc()
sys.stdout.write(metrics.exposition()[0].decode())
"""


def run_python(source: str, **values: Any) -> str:
    code = textwrap.dedent(source).format(files=str(FILES_DIR), **values)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_counters_of_two_processes_add_up_through_one_directory(tmp_path: Path) -> None:
    directory = str(tmp_path)
    run_python(PUSH_PROCESS, directory=directory)
    got = samples(run_python(DASHBOARD_PROCESS, directory=directory, prune=False))
    assert got[("mod_wsgi_ws_sidecar_push_messages_total", (("sidecar", "push"),))] == 3
    assert got[("mod_wsgi_ws_sidecar_push_deliveries_total", (("sidecar", "push"),))] == 30
    bucket = (("le", "0.005"), ("sidecar", "push"))
    assert got[("mod_wsgi_ws_sidecar_fanout_seconds_bucket", bucket)] == 1
    accepted = ("mod_wsgi_ws_sidecar_websockets_accepted_total", (("sidecar", "metrics-sidecar"),))
    assert got[accepted] == 1
    # A dashboard starting afresh drops what ended processes counted, as Apache's counters restart.
    restarted = samples(run_python(DASHBOARD_PROCESS, directory=directory, prune=True))
    assert ("mod_wsgi_ws_sidecar_push_messages_total", (("sidecar", "push"),)) not in restarted
    assert restarted[accepted] == 1


def test_a_directory_set_after_prometheus_client_was_imported_is_refused(tmp_path: Path) -> None:
    # This test process imported prometheus_client at the top: its values live in memory.
    with pytest.raises(RuntimeError, match="imported before its directory was set"):
        sidecar_metrics.open_metrics("push", str(tmp_path))


# --- the push channel's Redis, through the dashboard ---------------------------------------


def test_what_a_push_sidecar_read_of_its_redis_is_read_back_while_fresh(tmp_path: Path) -> None:
    directory = str(tmp_path)
    sidecar_metrics.write_redis_stats(directory, "push", 5_000_000, 268435456, 42, now=1000.0)
    sidecar_metrics.write_redis_stats(directory, "old", 1, 2, 3, now=900.0)
    (tmp_path / "redis-broken.json").write_text("{not json")
    assert sidecar_metrics.read_redis_stats(directory, 1010.0) == [
        {"name": "push", "used_memory": 5_000_000, "maxmemory": 268435456, "channels": 42}
    ]
    # Stale past 30 s: a push sidecar that stopped reading is no longer shown.
    assert sidecar_metrics.read_redis_stats(directory, 1031.0) == []
    assert not list(tmp_path.glob("*.part"))


def test_the_push_sidecars_redis_on_the_endpoint_and_in_the_frames(
    tmp_path: Path, synthetic: dict
) -> None:
    directory = str(tmp_path)
    config = sidecar.Config(
        name="metrics-sidecar", poll_interval=0.05, max_clients=5, metrics_dir=directory
    )

    async def scenario() -> tuple[dict, dict]:
        import time

        sidecar_metrics.write_redis_stats(directory, "push", 5_000_000, 0, 42, now=time.time())
        sc = sidecar.Sidecar(
            config, lambda: synthetic, metrics=sidecar_metrics.Metrics(config.name, None)
        )
        async with TestClient(TestServer(sc.app)) as client:
            ws = await client.ws_connect("/ws")
            frame = json.loads(await ws.receive_str())
            text = await (await client.get("/metrics")).text()
            await ws.close()
            return frame, samples(text)

    frame, got = asyncio.run(asyncio.wait_for(scenario(), 15))
    assert frame["push"] == [
        {"name": "push", "used_memory": 5_000_000, "maxmemory": 0, "channels": 42}
    ]
    push = (("sidecar", "push"),)
    assert got[("mod_wsgi_ws_sidecar_push_channels", push)] == 42
    assert got[("mod_wsgi_ws_sidecar_push_redis_memory_bytes", push)] == 5_000_000
    assert got[("mod_wsgi_ws_sidecar_push_redis_maxmemory_bytes", push)] == 0
