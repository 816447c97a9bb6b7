"""Renders the benchmark's JSON as docs/benchmarks.md and docs/benchmarks.png (on the host,
with the venv's matplotlib) and prints the headline table.

    python bench/report.py bench/results/latest.json --markdown docs/benchmarks.md \
        --png docs/benchmarks.png

Every figure comes from the JSON; the prose below only says what the configurations are
and how to read the tables.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

# Column order of every table; the run order is (d), (b), (c), (e), (f), (a).
ORDER = ("debian-default", "role", "nginx", "direct", "tunnel", "nginx-tunnel")
SHORT = {
    "debian-default": "(a)",
    "role": "(b)",
    "nginx": "(c)",
    "direct": "(d)",
    "tunnel": "(e)",
    "nginx-tunnel": "(f)",
}
COLOURS = {
    "debian-default": "#c0392b",
    "role": "#1f6fb2",
    "nginx": "#2e8b57",
    "direct": "#7f7f7f",
    "tunnel": "#8e44ad",
    "nginx-tunnel": "#d68910",
}
FANOUT_P99_TARGETS = {1000: 250.0, 10000: 1000.0}  # clients -> ms
# The size the role is compared with nginx at, and its memory judged at.
TARGET_N = 10000
NGINX_FACTOR = 1.2
MAX_KB_PER_WS = 50
MAX_SIDECAR_KB_PER_WS = 12
REFUSED_IN_1S_SHARE = 0.99
MAX_FRAME_BYTES = 2048
# The machine busier than the container by more than this (points of all cores): other
# work competed with the run.
CONTENTION_POINTS = 20
# Beyond this share of failed HTTP samples the p99 is the timeout itself.
FAILED_SHARE_FOR_P99 = 0.01

PREAMBLE = """\
How many dashboard WebSockets one 2-core machine holds through the role's Apache, how
quickly the sidecar fans a snapshot out to all of them, and what that costs the WSGI
application next to it. Every client runs inside the benchmark's container and talks to
127.0.0.1 there; nothing crosses a network.

The same load runs against six configurations, in the order (d), (b), (c), (e), (f), (a):

- **(a) debian-default**: the guide's wiring by hand (mod_wsgi's "Hosting WebSocket
  Applications") on Debian's stock `mpm_event` (150 workers) and open-files limit, with
  the guide's sample sidecar re-implemented in `bench/reference_sidecar.py`: the whole
  scoreboard as indented JSON, sent to one client after the other, no client cap.
- **(b) role**: the role as deployed by `bench/playbook.yml`, sized with
  `mod_wsgi_ws_sidecar_capacity_websockets` = the largest size and
  `mod_wsgi_ws_sidecar_capacity_http: 150`; WebSockets at `ws://127.0.0.1/metrics/ws`.
- **(c) nginx**: Debian's nginx on 127.0.0.1:8081 as the WebSocket front proxy of the same
  sidecar (`bench/nginx.conf`, sending the sidecar's secret as Apache does); the WSGI
  application stays behind Apache.
- **(d) direct**: clients straight to the role's sidecar on 127.0.0.1:8765 (with its
  secret), the floor that no front proxy can beat.
- **(e) Apache, bare** and **(f) nginx, bare**: (b) and (c) with a bare sidecar
  (`bench/flat_sidecar.py`, on the package's core) in the dashboard's place: the same
  daemon processes, port, cap, secret and pacing, and every tick a frame of exactly the
  bytes (d)'s frames had. The two front ends relay the same payload, so their difference
  is the relay's cost alone, and (b) against (e) is what the dashboard's own frames cost
  through Apache (through Apache every WebSocket is a busy worker, and the dashboard lists
  some of them).

For each configuration the client ramps to each size in turn and holds the clients while
it measures, then attempts as many again as the largest size (the overload step: twice
the configured capacity) and closes everything. How to read the tables:

- **Fan-out delay** is receive time minus the snapshot's own timestamp (same clock), over
  every (client, tick) delivery of the ticks taken during a ~6 s window; late deliveries
  are waited for (up to 15 s). (a)'s frames have no timestamp of their own, so its delay
  is measured from the scoreboard's `current_time`, read just before the frame is built.
- **Clients reached per tick** is the worst tick's share of the held clients that got it,
  over the ticks wholly inside the window: a sidecar of several processes sends each tick
  from each process half an interval apart, so the window's first and last tick may be
  split by its edges and are left out.
- **HTTP** is `GET /` of the WSGI demo app through Apache in every configuration,
  sequential, each on a new connection with a 5 s timeout; failures are counted, and when
  more than 1% fail the p99 is the timeout.
- **RSS per WebSocket** is the growth of resident memory over the idle state divided by
  the clients held (RSS summed over processes, so shared pages count once per process).
- **CPU** is CPU seconds over the phase as % of one core, summed over the processes of
  the load client (all its workers), the sidecar, Apache or nginx. The container and
  machine figures are % of all cores: the container's own cgroup, and `/proc/stat`, which
  also counts whatever else the machine runs. A container near 100% means the figures are
  bounded by the test bed's CPU; a machine far above the container means other work
  competed with the run.
- The load client shares the two cores with the servers at the same CPU priority: its
  own waiting for them counts in every delay it measures (fan-out, handshakes, refusals),
  and the cores it takes are not the WSGI application's.
- A hung attempt got no answer within the handshake timeout; a skipped one never started
  because its step ran out of time (this bounds (a), where most attempts hang).
"""


# --- reading the JSON ---------------------------------------------------------------------


def by_key(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {config["key"]: config for config in data.get("configs", [])}


def step_of(config: dict[str, Any] | None, size: int) -> dict[str, Any] | None:
    if config is None:
        return None
    return next((s for s in config.get("steps", []) if s["size"] == size), None)


def dig(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def http_p99(http: dict[str, Any] | None, timeout_ms: float) -> float | None:
    """The p99 counting failures: the timeout once more than 1% of samples failed."""
    if not http:
        return None
    total = http["ok"] + http["failed"]
    if total and http["failed"] / total > FAILED_SHARE_FOR_P99:
        return timeout_ms
    return http["p99_ms"]


def rss_per_ws_total(step: dict[str, Any] | None) -> float | None:
    """Resident memory per held WebSocket over every server process (KB)."""
    if not step or not step["held"]:
        return None
    return round(sum(step["memory"]["delta_kb"].values()) / step["held"], 1)


# --- formatting ---------------------------------------------------------------------------


def num(value: Any, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits == 0:
        value = round(value)
    text = f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"
    return text + suffix


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"x{a / b:.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


Row = tuple[str, Callable[[dict[str, Any]], str]]


def side_by_side(items: dict[str, dict[str, Any] | None], rows: Sequence[Row]) -> list[str]:
    """One row per metric, one column per configuration (a) to (d)."""
    header = ["", *(f"{SHORT[k]} {k}" for k in ORDER)]
    body = [
        [label, *(fmt(items[k]) if items.get(k) else "-" for k in ORDER)] for label, fmt in rows
    ]
    return table(header, body)


def cpu_row(label: str, phase: str, group: str | None) -> Row:
    def fmt(step: dict[str, Any]) -> str:
        cpu = dig(step, "cpu", phase) if phase else step.get("cpu")
        if group == "client":
            return num(dig(cpu, "client_pct_core"), 0, "%")
        if group in ("machine", "container"):
            return num(dig(cpu, f"{group}_busy_pct"), 0, "%")
        return num(dig(cpu, "server_pct_core", group or ""), 0, "%")

    return label, fmt


def step_rows(timeout_ms: float) -> list[Row]:
    return [
        ("clients held", lambda s: f"{num(s['held'])} of {num(s['size'])}"),
        (
            "this step: refused / hung / errors / skipped",
            lambda s: " / ".join(
                num(s["ramp"][k]) for k in ("refused", "hung", "errors", "skipped")
            ),
        ),
        ("ramp duration (s)", lambda s: num(s["ramp"]["seconds"], 1)),
        (
            "handshake p50 / p99 (ms)",
            lambda s: (
                f"{num(s['ramp']['connect']['p50_ms'])} / {num(s['ramp']['connect']['p99_ms'])}"
            ),
        ),
        ("dropped by the server while held", lambda s: num(s["dropped"])),
        ("fan-out delay p50 (ms)", lambda s: num(s["fanout"]["delay"]["p50_ms"])),
        ("**fan-out delay p99 (ms)**", lambda s: num(s["fanout"]["delay"]["p99_ms"])),
        ("fan-out delay max (ms)", lambda s: num(s["fanout"]["delay"]["max_ms"])),
        ("clients reached per tick (worst tick)", lambda s: pct(s["fanout"]["share_min"])),
        ("bytes per client per tick", lambda s: num(s["fanout"]["bytes_per_client_tick"])),
        (
            "HTTP p50 / **p99** / max held (ms)",
            lambda s: (
                f"{num(s['http']['p50_ms'], 1)} / "
                f"{num(http_p99(s['http'], timeout_ms), 1)} / {num(s['http']['max_ms'], 1)}"
            ),
        ),
        (
            "HTTP failed",
            lambda s: f"{s['http']['failed']} of {s['http']['ok'] + s['http']['failed']}",
        ),
        (
            "RSS Apache / sidecar / nginx (MB)",
            lambda s: " / ".join(
                mb(s["memory"]["rss_kb"][g]) for g in ("apache", "sidecar", "nginx")
            ),
        ),
        (
            "RSS per WebSocket: Apache / sidecar / nginx (KB)",
            lambda s: " / ".join(
                num(s["memory"]["per_websocket_kb"][g]) for g in ("apache", "sidecar", "nginx")
            ),
        ),
        ("**RSS per WebSocket, all (KB)**", lambda s: num(rss_per_ws_total(s))),
        cpu_row("CPU in fan-out window: load client", "fanout", "client"),
        cpu_row("CPU in fan-out window: sidecar", "fanout", "sidecar"),
        cpu_row("CPU in fan-out window: Apache", "fanout", "apache"),
        cpu_row("CPU in fan-out window: nginx", "fanout", "nginx"),
        cpu_row("CPU in fan-out window: container (all cores)", "fanout", "container"),
        cpu_row("CPU in fan-out window: machine (all cores)", "fanout", "machine"),
        cpu_row("CPU during the ramp: load client", "ramp", "client"),
        cpu_row("CPU during the ramp: sidecar", "ramp", "sidecar"),
        cpu_row("CPU during the ramp: container (all cores)", "ramp", "container"),
        cpu_row("CPU during the ramp: machine (all cores)", "ramp", "machine"),
    ]


def overload_rows(timeout_ms: float) -> list[Row]:
    return [
        ("held before", lambda o: num(o["held_before"])),
        ("attempted", lambda o: num(o["attempted"])),
        (
            "connected / refused / hung / errors / skipped",
            lambda o: " / ".join(
                num(o[k]) for k in ("connected", "refused", "hung", "errors", "skipped")
            ),
        ),
        (
            "**refused within 1 s**",
            lambda o: f"{num(o['refused_within_1s'])} of {num(o['attempted'])}",
        ),
        (
            "refusal p50 / p99 / max (ms)",
            lambda o: " / ".join(num(o["refuse"][k]) for k in ("p50_ms", "p99_ms", "max_ms")),
        ),
        (
            "answers",
            lambda o: ", ".join(f"{k}: {v}" for k, v in sorted(o["reasons"].items())) or "-",
        ),
        ("step duration (s)", lambda o: num(o["seconds"], 1)),
        (
            "HTTP p50 / **p99** / max during (ms)",
            lambda o: (
                f"{num(o['http']['p50_ms'], 1)} / "
                f"{num(http_p99(o['http'], timeout_ms), 1)} / {num(o['http']['max_ms'], 1)}"
            ),
        ),
        (
            "HTTP failed",
            lambda o: f"{o['http']['failed']} of {o['http']['ok'] + o['http']['failed']}",
        ),
        cpu_row("CPU: load client", "", "client"),
        cpu_row("CPU: sidecar", "", "sidecar"),
        cpu_row("CPU: Apache", "", "apache"),
        cpu_row("CPU: container (all cores)", "", "container"),
        cpu_row("CPU: machine (all cores)", "", "machine"),
    ]


# --- targets ------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "NOT MEASURED" if ok is None else ("**MET**" if ok else "**MISSED**")


def target_row(label: str, ok: bool | None, measured: str) -> list[str]:
    return [label, verdict(ok), measured if ok is not None else "-"]


def targets(data: dict[str, Any], timeout_ms: float) -> list[list[str]]:
    """Issue 20's targets for (b), the role, and the earlier ones still kept."""
    configs = by_key(data)
    role, nginx = configs.get("role"), configs.get("nginx")
    largest = max(data.get("sizes") or [TARGET_N])
    idle_p99 = http_p99(dig(role, "idle", "http"), timeout_ms)
    top, at_n = step_of(role, largest), step_of(role, TARGET_N)
    over = dig(role, "overload")
    rows = []

    outcomes = ("refused", "hung", "errors", "skipped")
    ok = (
        None
        if top is None
        else (
            top["held"] == largest
            and not sum(top["ramp"][k] for k in outcomes)
            and not top["dropped"]
        )
    )
    rows.append(
        target_row(
            f"(b) holds {largest:,} with none refused or hung",
            ok,
            f"held {top['held']:,}; refused/hung/errors/skipped at the last step: "
            + " / ".join(str(top["ramp"][k]) for k in outcomes)
            if top
            else "",
        )
    )

    ours = dig(at_n, "fanout", "delay", "p99_ms")
    theirs = dig(step_of(nginx, TARGET_N), "fanout", "delay", "p99_ms")
    ok = None if ours is None or theirs is None else ours <= NGINX_FACTOR * theirs
    rows.append(
        target_row(
            f"fan-out p99 at {TARGET_N:,} within {NGINX_FACTOR}x (c) nginx's, same run",
            ok,
            f"{num(ours)} ms vs {num(theirs)} ms (x{ours / theirs:.2f})" if ok is not None else "",
        )
    )

    apache = dig(step_of(configs.get("tunnel"), TARGET_N), "fanout", "delay", "p99_ms")
    bare_nginx = dig(step_of(configs.get("nginx-tunnel"), TARGET_N), "fanout", "delay", "p99_ms")
    ok = None if apache is None or bare_nginx is None else apache <= NGINX_FACTOR * bare_nginx
    rows.append(
        target_row(
            f"like for like: (e) Apache's fan-out p99 at {TARGET_N:,} within {NGINX_FACTOR}x"
            " (f) nginx's, the same bare sidecar and bytes",
            ok,
            f"{num(apache)} ms vs {num(bare_nginx)} ms (x{apache / bare_nginx:.2f})"
            if ok is not None
            else "",
        )
    )

    for size, limit in {**FANOUT_P99_TARGETS, largest: 1000.0}.items():
        step = step_of(role, size)
        p99 = dig(step, "fanout", "delay", "p99_ms")
        # Of the N clients wanted, not only of those that got in.
        reached = None if step is None else (step["fanout"]["share_min"] or 0) * step["held"] / size
        ok = None if p99 is None or reached is None else p99 < limit and reached >= 1.0
        rows.append(
            target_row(
                f"fan-out p99 < {limit:,.0f} ms at N={size:,}, every one of N clients reached",
                ok,
                f"{num(p99)} ms; worst tick reached {pct(reached)} of {size:,}",
            )
        )

    per_ws = rss_per_ws_total(at_n)
    rows.append(
        target_row(
            f"memory per WebSocket (all processes) < {MAX_KB_PER_WS} KB at {TARGET_N:,}",
            None if per_ws is None else per_ws < MAX_KB_PER_WS,
            f"{num(per_ws, 1)} KB"
            + (
                f" (Apache {num(at_n['memory']['per_websocket_kb']['apache'], 1)},"
                f" sidecar {num(at_n['memory']['per_websocket_kb']['sidecar'], 1)})"
                if at_n
                else ""
            ),
        )
    )

    sidecar_kb = dig(at_n, "memory", "per_websocket_kb", "sidecar")
    bare_kb = dig(step_of(configs.get("direct"), TARGET_N), "memory", "per_websocket_kb", "sidecar")
    rows.append(
        target_row(
            f"the sidecar's memory per client at {TARGET_N:,} <= {MAX_SIDECAR_KB_PER_WS} KB",
            None if sidecar_kb is None else sidecar_kb <= MAX_SIDECAR_KB_PER_WS,
            f"{num(sidecar_kb, 1)} KB through Apache; {num(bare_kb, 1)} KB with clients"
            " straight to it ((d))",
        )
    )

    held_p99 = http_p99(dig(at_n, "http"), timeout_ms)
    rows.append(
        target_row(
            f"WSGI app p99 while holding {TARGET_N:,} within 2x its idle p99",
            None if held_p99 is None or idle_p99 is None else held_p99 <= 2 * idle_p99,
            f"{num(held_p99, 1)} ms held vs {num(idle_p99, 1)} ms idle",
        )
    )

    frames = [
        s["fanout"]["bytes_per_client_tick"]
        for s in (role or {}).get("steps", [])
        if s["fanout"]["bytes_per_client_tick"] is not None
    ]
    rows.append(
        target_row(
            f"bytes per client per tick < 2 KB ({MAX_FRAME_BYTES:,} bytes), every size",
            max(frames) < MAX_FRAME_BYTES if frames else None,
            ", ".join(
                f"{num(s['fanout']['bytes_per_client_tick'])} at N={s['size']:,}"
                for s in (role or {}).get("steps", [])
            ),
        )
    )

    if over:
        attempted = over["attempted"]
        ok = (
            over["refused"] == attempted
            and over["hung"] == 0
            and over["refused_within_1s"] >= REFUSED_IN_1S_SHARE * attempted
        )
        measured = (
            f"refused {over['refused']:,} of {attempted:,}, {over['refused_within_1s']:,} within"
            f" 1 s ({pct(over['refused_within_1s'] / attempted if attempted else None)}; max"
            f" {num(over['refuse']['max_ms'])} ms); connected {over['connected']:,}, hung"
            f" {over['hung']:,}"
        )
    else:
        ok, measured = None, ""
    rows.append(
        target_row(
            "at twice the capacity: 100% of the excess refused, 99% within 1 s, 0 hung",
            ok,
            measured,
        )
    )
    p99 = http_p99(dig(over, "http"), timeout_ms)
    rows.append(
        target_row(
            "at twice the capacity, WSGI app p99 within 2x its idle p99",
            None if p99 is None or idle_p99 is None else p99 <= 2 * idle_p99,
            f"{num(p99, 1)} ms vs {num(idle_p99, 1)} ms idle",
        )
    )
    return rows


# --- the figure ---------------------------------------------------------------------------


def render_png(data: dict[str, Any], path: str, timeout_ms: float) -> None:
    configs = by_key(data)
    fig = Figure(figsize=(11, 4.2), dpi=110)
    left, right = fig.subplots(1, 2)
    for key in ORDER:
        config = configs.get(key)
        if not config:
            continue
        steps = config["steps"]
        xs = [s["held"] for s in steps]  # (a) never holds more than its workers
        style = {"color": COLOURS[key], "marker": "o", "label": f"{SHORT[key]} {key}"}
        fan = [s["fanout"]["delay"]["p99_ms"] for s in steps]
        left.plot(*_present(xs, fan), **style)
        http = [http_p99(s["http"], timeout_ms) for s in steps]
        right.plot(*_present(xs, http), **style)
    for size, limit in FANOUT_P99_TARGETS.items():
        left.axhline(limit, color="black", linestyle=":", linewidth=0.8)
        left.annotate(
            f"target at {size:,}",
            (0.01, limit),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="bottom",
        )
    right.axhline(timeout_ms, color="black", linestyle=":", linewidth=0.8)
    right.annotate(
        "timeout (requests failing)",
        (0.01, timeout_ms),
        xycoords=("axes fraction", "data"),
        fontsize=7,
        va="bottom",
    )
    for axis, title in (
        (left, "Fan-out delay p99 (ms)"),
        (right, "HTTP p99 of the WSGI app while held (ms)"),
    ):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlim(right=max(data["sizes"]) * 1.3)  # the largest size stays in view
        axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xlabel("WebSocket clients held")
        axis.set_title(title, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(f"{data['machine']['nproc']} cores, {data['machine']['cpu_model']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def _present(xs: list[int], ys: list[float | None]) -> tuple[list[int], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


# --- the Markdown -------------------------------------------------------------------------


def headline(data: dict[str, Any], timeout_ms: float) -> list[str]:
    configs = by_key(data)
    rows = []
    for key in ORDER:
        config = configs.get(key)
        if not config:
            continue
        idle = http_p99(config["idle"]["http"], timeout_ms)
        for step in config["steps"]:
            ramp = step["ramp"]
            rows.append(
                [
                    f"{SHORT[key]} {key}",
                    num(step["size"]),
                    num(step["held"]),
                    f"{ramp['refused']} / {ramp['hung'] + ramp['skipped']}",
                    num(step["fanout"]["delay"]["p99_ms"]),
                    num(step["fanout"]["bytes_per_client_tick"]),
                    f"{num(http_p99(step['http'], timeout_ms), 1)} ({num(idle, 1)})",
                    num(rss_per_ws_total(step)),
                ]
            )
        over = config["overload"]
        rows.append(
            [
                f"{SHORT[key]} {key}",
                f"+{num(over['attempted'])} (overload)",
                num(over["held_after"]),
                f"{over['refused']} / {over['hung'] + over['skipped']}",
                f"refused ≤1 s: {num(over['refused_within_1s'])}",
                "",
                f"{num(http_p99(over['http'], timeout_ms), 1)} ({num(idle, 1)})",
                "",
            ]
        )
    header = [
        "configuration",
        "clients",
        "held",
        "refused / hung (incl. skipped)",
        "fan-out p99 (ms)",
        "bytes/tick",
        "HTTP p99 ms (idle)",
        "RSS/WS (KB)",
    ]
    return table(header, rows)


def machine_section(data: dict[str, Any]) -> list[str]:
    m = data["machine"]
    v = m["versions"]
    s = data["settings"]
    rows = [
        ["CPU", f"{m['nproc']} x {m['cpu_model']}"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["OS, kernel", f"{m['os']}, {m['kernel']}"],
        [
            "versions",
            f"Apache {v['apache2']} ({v['apache2_package']}), mod_wsgi {v['mod_wsgi']}, "
            f"aiohttp {v['aiohttp']}, nginx {v['nginx']}, Python {v['python']}",
        ],
        ["started", data["started"]],
        ["source", data.get("revision") or "unknown"],
        ["command", f"`{data['command']}`"],
        ["duration", f"{num(data.get('duration_s'))} s for the driver"],
        ["sizes", ", ".join(f"{n:,}" for n in data["sizes"])],
        [
            "load client",
            f"{s['workers']} worker process(es), {s['inflight']} handshakes in flight at most, "
            f"{num(s['handshake_timeout_s'], 0)} s handshake timeout, "
            f"{num(s['step_seconds'], 0)} s per step to start attempts",
        ],
    ]
    return table(["", ""], rows)


def server_section(data: dict[str, Any]) -> list[str]:
    rows = []
    for key in ORDER:
        config = by_key(data).get(key)
        if not config:
            continue
        server = config["server"]
        mpm = ", ".join(f"{k} {v}" for k, v in server["mpm"].items()) or "-"
        proxy = "<br>".join(f"`{line}`" for line in server["proxypass"]) or "-"
        rows.append([f"{SHORT[key]} {key}", mpm, proxy, num(server["sidecar_open_files"])])
    return table(["configuration", "Apache mpm_event", "ProxyPass", "sidecar open files"], rows)


def phases(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The CPU figures of every measured phase of one configuration."""
    held = [cpu for step in config["steps"] for cpu in step["cpu"].values()]
    return [*held, config["overload"]["cpu"]]


def bounds(data: dict[str, Any]) -> list[str]:
    """What stopped each configuration short of the largest size, and how busy the test bed
    got, as far as the JSON tells."""
    largest = max(data["sizes"])
    lines = []
    for key in ORDER:
        config = by_key(data).get(key)
        step = step_of(config, largest)
        if not config or not step or step["held"] >= largest:
            continue
        held, files = step["held"], config["server"]["sidecar_open_files"]
        workers = int(config["server"]["mpm"].get("MaxRequestWorkers", 0))
        why = ""
        if files and held >= 0.95 * files:
            why = f"; the sidecar may open {files:,} files"
        elif key in ("role", "debian-default") and workers and held >= 0.95 * workers:
            why = f"; Apache's MaxRequestWorkers is {workers:,}"
        refusals = ", ".join(f"{n:,} x {reason}" for reason, n in step["ramp"]["reasons"].items())
        if refusals:
            why += f"; the ramp's refusals: {refusals}"
        lines.append(f"- {SHORT[key]} {key} held {held:,} of {largest:,}{why}.")
    measured = [p for config in data.get("configs", []) for p in phases(config)]
    if measured:
        client = max(p["client_pct_core"] for p in measured)
        container = max(p.get("container_busy_pct") or 0 for p in measured)
        machine = max(p["machine_busy_pct"] or 0 for p in measured)
        lines.append(
            f"- Highest over all phases: load client {client:.0f}% of one core (its"
            f" {data['settings']['workers']} worker processes together); container"
            f" {container:.0f}% and machine {machine:.0f}% of all cores."
        )
        contended = sorted(
            {
                f"{SHORT[config['key']]} {config['key']}"
                for config in data.get("configs", [])
                for p in phases(config)
                if (p["machine_busy_pct"] or 0) - (p.get("container_busy_pct") or 0)
                > CONTENTION_POINTS
            }
        )
        if contended:
            lines.append(
                "- Other work on the machine competed with the run (the machine more than"
                f" {CONTENTION_POINTS} points busier than the container) during"
                f" {', '.join(contended)}: their figures are noisy."
            )
    return [*lines, ""] if lines else ["- Every configuration held every client.", ""]


def cpu_of(step: dict[str, Any] | None, phase: str, group: str) -> float | None:
    """% of one core a group used in a phase of a step ("client": the load client)."""
    cpu = dig(step, "cpu", phase)
    if cpu is None:
        return None
    return cpu["client_pct_core"] if group == "client" else cpu["server_pct_core"].get(group)


def obstacles(data: dict[str, Any], timeout_ms: float) -> list[str]:
    """What the JSON shows standing in the way of the targets (b) missed."""
    configs = by_key(data)
    role, nginx, direct, bare, bare_nginx = (
        configs.get(k) for k in ("role", "nginx", "direct", "tunnel", "nginx-tunnel")
    )
    largest = max(data["sizes"])
    b, c, d = step_of(role, TARGET_N), step_of(nginx, TARGET_N), step_of(direct, TARGET_N)
    e, f = step_of(bare, TARGET_N), step_of(bare_nginx, TARGET_N)
    lines = []
    if e and f:
        e_parts = [cpu_of(e, "fanout", g) for g in ("sidecar", "apache", "client")]
        f_parts = [cpu_of(f, "fanout", g) for g in ("sidecar", "nginx", "client")]
        if None not in e_parts + f_parts:
            lines.append(
                f"- **The front ends like for like** ({TARGET_N:,} clients, the bare sidecar,"
                f" {num(e['fanout']['bytes_per_client_tick'])}-byte frames): fan-out p99"
                f" {num(dig(e, 'fanout', 'delay', 'p99_ms'))} ms through Apache ((e)) against"
                f" {num(dig(f, 'fanout', 'delay', 'p99_ms'))} ms through nginx ((f)). Over the"
                f" fan-out window (% of one core): (e) sidecar {e_parts[0]:.0f}, Apache"
                f" {e_parts[1]:.0f}, load client {e_parts[2]:.0f}; (f) sidecar {f_parts[0]:.0f},"
                f" nginx {f_parts[1]:.0f}, load client {f_parts[2]:.0f}. Apache 2.4 relays each"
                " WebSocket in a worker thread of its own, woken for every frame (its"
                " asynchronous tunnels are on httpd's trunk only); nginx relays them all from"
                " one event loop per worker. That difference is Apache's floor: no setting of"
                " the role's moves it."
            )
    if b and e:
        lines.append(
            "- **The dashboard's own frames** through Apache:"
            f" {num(b['fanout']['bytes_per_client_tick'])} bytes a tick against the bare"
            f" {num(e['fanout']['bytes_per_client_tick'])}, since"
            " through Apache every WebSocket is a busy worker and the page lists up to six of"
            " them (every field of a frame is one the page draws). Fan-out p99"
            f" {num(dig(b, 'fanout', 'delay', 'p99_ms'))} ms against"
            f" {num(dig(e, 'fanout', 'delay', 'p99_ms'))} ms; the dashboard also reads the"
            " scoreboard each tick."
        )
    top = step_of(role, largest)
    if top and largest != TARGET_N:
        lines.append(
            f"- **{largest:,} clients**: the container was"
            f" {num(dig(top, 'cpu', 'fanout', 'container_busy_pct'))}% busy over the fan-out"
            f" window (of all cores), the load client alone"
            f" {num(cpu_of(top, 'fanout', 'client'))}% of one core; a sidecar process whose"
            " tick overruns the next one's moment by a whole interval skips a tick, which is"
            " what a worst tick below 100% means. The bare sidecar ((d)) at the same size:"
            f" {num(dig(step_of(direct, largest), 'fanout', 'delay', 'p99_ms'))} ms."
        )
    if b:
        lines.append(
            f"- **Memory**: {num(b['memory']['per_websocket_kb']['apache'], 1)} KB per"
            f" WebSocket in Apache through the dashboard"
            f" ({num(dig(e, 'memory', 'per_websocket_kb', 'apache'), 1)} KB as a bare tunnel,"
            " (e)), and"
            f" {num(b['memory']['per_websocket_kb']['sidecar'], 1)} KB in the sidecar"
            f" ({num(dig(d, 'memory', 'per_websocket_kb', 'sidecar'), 1)} KB with its"
            f" clients straight to it, (d)) at {TARGET_N:,}. About 56 KB of Apache's is its"
            " memory pools for the tunnel (seven blocks of 8 KiB), which no setting changes;"
            " most of the sidecar's is aiohttp's objects for each connection:"
            " [memory.md](memory.md) has both breakdowns and everything tried. Through nginx"
            f" the front end costs {num(dig(c, 'memory', 'per_websocket_kb', 'nginx'), 1)} KB."
        )
        lines.append(
            f"- **The WSGI app while {TARGET_N:,} are held**: its requests wait for the cores"
            " during each tick's sends, paced over half of each sidecar process's turn; the"
            f" container was {num(dig(b, 'cpu', 'http', 'container_busy_pct'))}% busy while"
            " they were sampled, the load client's share of it included. nginx in front"
            f" shows it too ({num(http_p99(dig(c, 'http'), timeout_ms), 1)} ms held)."
        )
    over = dig(role, "overload")
    if over and over["seconds"] and over["refused"]:
        inflight, rate = data["settings"]["inflight"], over["refused"] / over["seconds"]
        lines.append(
            f"- **Refusals at twice the capacity**: {rate:,.0f} a second ({over['refused']:,}"
            f" in {num(over['seconds'], 1)} s). The load client keeps {inflight} handshakes in"
            f" flight, so each waits about {1000 * inflight / rate:,.0f} ms on average"
            " (Little's law): the second goes to waiting for the cores, not to any one"
            " refusal. Over the step (% of one core): Apache"
            f" {num(dig(over, 'cpu', 'server_pct_core', 'apache'))}, sidecar"
            f" {num(dig(over, 'cpu', 'server_pct_core', 'sidecar'))}, load client"
            f" {num(dig(over, 'cpu', 'client_pct_core'))}; the container"
            f" {num(dig(over, 'cpu', 'container_busy_pct'))}% of all cores. Every refusal is"
            " the sidecar's 503 before the handshake, relayed by Apache, while the held"
            " clients keep getting their ticks on the same cores; with no front end at all"
            f" ((d)), {num(dig(direct, 'overload', 'refused_within_1s'))} of"
            f" {num(dig(direct, 'overload', 'attempted'))} were refused within 1 s."
        )
    return [*lines, ""]


def render_markdown(data: dict[str, Any], png_name: str, timeout_ms: float) -> str:
    configs = by_key(data)
    out = [
        "# Benchmarks: WebSocket capacity and fan-out",
        "",
        "<!-- Generated by bench/report.py from bench/results/latest.json: edit those. -->",
        "",
        PREAMBLE,
        "## How to run",
        "",
        "```sh",
        "bench/run.sh                          # sizes 1000, 10000 and 20000, about 20 minutes",
        'BENCH_SIZES="100 300" bench/run.sh    # a quick check of the whole pipeline',
        "```",
        "",
        "It needs what `scripts/test.sh` needs (root or a running Docker engine); see",
        "`bench/README.md`. Results: `bench/results/latest.json`, this page and its figure.",
        "",
        "## The machine and the run",
        "",
        *machine_section(data),
        "## Targets (configuration (b), the role)",
        "",
        *table(["target", "verdict", "measured"], targets(data, timeout_ms)),
        "## What stands in the way",
        "",
        *obstacles(data, timeout_ms),
        "## Headline",
        "",
        *headline(data, timeout_ms),
        f"![Fan-out p99 and HTTP p99 against clients]({png_name})",
        "",
    ]
    idle_rows: list[Row] = [
        (
            "HTTP p50 / p99 / max idle (ms)",
            lambda c: " / ".join(
                num(c["idle"]["http"][k], 1) for k in ("p50_ms", "p99_ms", "max_ms")
            ),
        ),
        ("HTTP failed idle", lambda c: str(c["idle"]["http"]["failed"])),
        (
            "RSS idle Apache / sidecar / nginx (MB)",
            lambda c: " / ".join(
                mb(c["idle"]["rss_kb"][g]) for g in ("apache", "sidecar", "nginx")
            ),
        ),
        ("seconds for the whole configuration", lambda c: num(c["seconds"], 0)),
    ]
    out += ["## Idle, before the ramp", "", *side_by_side(dict(configs), idle_rows)]
    for size in data["sizes"]:
        steps = {key: step_of(configs.get(key), size) for key in ORDER}
        out += [f"## Holding {size:,} clients", "", *side_by_side(steps, step_rows(timeout_ms))]
    overloads = {key: dig(configs.get(key), "overload") for key in ORDER}
    out += [
        "## Overload: as many more attempts as the largest size held",
        "",
        *side_by_side(overloads, overload_rows(timeout_ms)),
    ]
    out += ["## Ratios: the role, the front ends like for like", "", *ratios(data, timeout_ms)]
    out += ["## Server settings in effect", "", *server_section(data)]
    out += ["## What bounded the run", "", *bounds(data)]
    if data.get("errors"):
        out += ["## Errors", ""] + [f"- {e['config']}: {e['error']}" for e in data["errors"]] + [""]
    return "\n".join(out).rstrip() + "\n"


def ratios(data: dict[str, Any], timeout_ms: float) -> list[str]:
    configs = by_key(data)
    rows = []
    metrics: list[tuple[str, Callable[[dict[str, Any] | None], float | None]]] = [
        ("fan-out p99", lambda s: dig(s, "fanout", "delay", "p99_ms")),
        ("HTTP p99 held", lambda s: http_p99(dig(s, "http"), timeout_ms)),
        ("RSS per WebSocket", rss_per_ws_total),
    ]
    keys = ("role", "nginx", "direct", "tunnel", "nginx-tunnel")
    for size in data["sizes"]:
        b, c, d, e, f = (step_of(configs.get(k), size) for k in keys)
        for name, get in metrics:
            rows.append(
                [
                    f"{name} at {size:,}",
                    ratio(get(b), get(c)),
                    ratio(get(b), get(d)),
                    ratio(get(e), get(f)),
                    ratio(get(b), get(e)),
                ]
            )
    header = [
        "metric",
        "(b) / (c) nginx",
        "(b) / (d) direct",
        "(e) / (f): Apache / nginx, like for like",
        "(b) / (e): the dashboard's frames / bare",
    ]
    return [
        "Ratios above 1 mean the first costs more (slower, or more memory) than the second.",
        "",
        *table(header, rows),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the benchmark's JSON")
    parser.add_argument("results", help="bench/results/latest.json")
    parser.add_argument("--markdown", default="docs/benchmarks.md")
    parser.add_argument("--png", default="docs/benchmarks.png")
    args = parser.parse_args(argv)
    with open(args.results, encoding="utf-8") as fh:
        data = json.load(fh)
    timeout_ms = 1000 * data["settings"]["http_timeout_s"]
    render_png(data, args.png, timeout_ms)
    png_name = os.path.relpath(args.png, os.path.dirname(os.path.abspath(args.markdown)))
    with open(args.markdown, "w", encoding="utf-8") as fh:
        fh.write(render_markdown(data, png_name, timeout_ms))
    print("\n".join(headline(data, timeout_ms)))
    print("\n".join(table(["target", "verdict", "measured"], targets(data, timeout_ms))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
