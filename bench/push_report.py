"""Renders the push benchmark's results (bench/push.sh) as docs/benchmarks-push.md.

python bench/push_report.py bench/results/push-latest.json --markdown docs/benchmarks-push.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LABELS = {
    "role": "the role: push sidecar through Apache (Redis Streams)",
    "socketio": "python-socketio 5.7 AsyncServer + AsyncRedisManager (no proxy)",
}
# The columns of the CPU table, as push_bench.py groups the processes.
CPU_GROUPS = ["apache", "push sidecar", "socket.io server", "redis", "subscribers", "publisher"]
# The targets: p99 publish-to-receipt by subscribers, and nothing lost.
TARGETS_MS = {1000: 100, 10000: 1000}


def verdict(run: dict) -> str:
    """Met only if every subscriber subscribed, every delivery was made and
    the p99 is under the size's target: the latency of those who got through
    says nothing of those who did not."""
    target = TARGETS_MS.get(run["size"])
    if run["target"] != "role" or target is None:
        return ""
    everyone = (
        run["subscribed"] == run["size"]
        and run["lost"] == 0
        and run.get("deliveries", 0) >= run["size"] * run["messages"]
    )
    met = everyone and run["p99_ms"] is not None and run["p99_ms"] < target
    return (
        f"{'met' if met else 'missed'} (all {run['size']:,} subscribed, p99 < {target} ms, 0 lost)"
    )


def refusals(run: dict) -> str:
    """Why attempts to connect or subscribe failed (each retried), most first."""
    found = run.get("refusals") or {}
    return "; ".join(f"{count:,} x {reason}" for reason, count in list(found.items())[:4])


LISTENERS = {
    "unix": "The push sidecar listens on a unix socket (`bench/push_playbook.yml`); every",
    "tcp": "The push sidecar listens on loopback TCP as the role's default processes (one"
    " per 2,500 clients, at most one per core); every",
}


def render(report: dict, listener: str = "unix") -> str:
    lines = [
        "# Push path benchmark",
        "",
        "Publish-to-receipt delay of the push channel: N subscribers of one channel,",
        "one message published a second, each carrying its publish time; every",
        "subscriber notes when each arrives. All processes in one Debian 12 container",
        f"on a {report['machine']['cpus']}-core machine, clients included; made by",
        "`bench/push.sh` (`bench/push_bench.py`).",
        LISTENERS[listener],
        "subscriber runs on the same lean client (`bench/lean_ws.py`), in processes",
        "of at most 1,500.",
        "",
        f"Run {report['when']}, revision {report['revision']}.",
        "",
        *([f"Note: {report['note']}", ""] if report.get("note") else []),
        "| Target | Subscribers | Subscribed in | Messages | p50 | p99 | max | Lost | Verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    refused = [run for run in report["runs"] if run.get("refusals")]
    for run in report["runs"]:
        lines.append(
            f"| {LABELS.get(run['target'], run['target'])} | {run['subscribed']:,} of "
            f"{run['size']:,} | {run['connect_seconds']} s | {run['messages']} | "
            f"{run['p50_ms']} ms | {run['p99_ms']} ms | {run['max_ms']} ms | "
            f"{run['lost']:,} | {verdict(run)} |"
        )
    logged = report.get("error_log")
    if logged is not None:
        lines += [
            "",
            f"Apache's error log after the runs: {logged['descriptor_errors']} lines of a"
            f' descriptor lacking ("Error 24", "Too many open files"), {logged["errors"]}'
            " lines at ERROR.",
        ]
    if refused:
        lines += [
            "",
            "Attempts refused or failed (each retried, at most 30 times a subscriber):",
            "",
        ]
        lines += [f"- {run['target']}, {run['size']:,}: {refusals(run)}" for run in refused]
    lines += [
        "",
        "CPU seconds each part used while the messages were published and delivered",
        "(the same 2 cores serve everything):",
        "",
        "| Target | Subscribers | Wall | " + " | ".join(CPU_GROUPS) + " |",
        "|---|---|---|" + "---|" * len(CPU_GROUPS),
    ]
    for run in report["runs"]:
        cpu = run.get("cpu_seconds", {})
        lines.append(
            f"| {run['target']} | {run['size']:,} | {run.get('wall_seconds', '?')} s | "
            + " | ".join(f"{cpu[g]} s" if g in cpu else "" for g in CPU_GROUPS)
            + " |"
        )
    lines += [
        "",
        "Django Channels' Redis channel layer (Debian 12's `python3-channels-redis`",
        "4.0) is not measured: it needs an ASGI server (Daphne or uvicorn) and a",
        "Channels consumer, a deployment of its own rather than a layer this",
        "benchmark could swap in.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--markdown", required=True)
    parser.add_argument("--listener", choices=sorted(LISTENERS), default="unix")
    parser.add_argument(
        "--error-log",
        nargs=2,
        type=int,
        metavar=("DESCRIPTOR_ERRORS", "ERRORS"),
        help="counted in Apache's error log after the runs: kept in the results",
    )
    args = parser.parse_args()
    report = json.loads(Path(args.results).read_text())
    if args.error_log is not None:
        descriptors, errors = args.error_log
        report["error_log"] = {"descriptor_errors": descriptors, "errors": errors}
        Path(args.results).write_text(json.dumps(report, indent=1) + "\n")
    text = render(report, args.listener)
    Path(args.markdown).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
