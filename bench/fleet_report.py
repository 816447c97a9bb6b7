"""Gathers the fleet benchmark's pieces (bench/fleet.sh) into one results file
and renders it as docs/benchmarks-fleet.md.

python bench/fleet_report.py .state/bench-fleet --revision REV \
    --out bench/results/fleet-latest.json --markdown docs/benchmarks-fleet.md
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The push benchmark's targets on one host (bench/push_report.py), for comparison.
SINGLE_HOST_TARGETS_MS = {1000: 100, 10000: 1000}
LOAD_KEYS = (
    "clients",
    "published",
    "publish_failures",
    "received_total",
    "clients_with_problems",
    "missing_total",
    "duplicates_total",
    "resets_total",
    "reconnects_total",
    "latency_ms",
)


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)


def steady_run(work: Path, size: int) -> dict[str, Any]:
    """One size's two halves (through each balancer) as one run."""
    (lead,) = read(work / f"steady-{size}-lead.json")["runs"]
    (share,) = read(work / f"steady-{size}-share.json")["runs"]
    samples = sorted(
        read(work / f"steady-{size}-lead-samples.json")
        + read(work / f"steady-{size}-share-samples.json")
    )
    slowest = [
        max(a or 0, b or 0)
        for a, b in zip(
            lead["slowest_per_message_ms"], share["slowest_per_message_ms"], strict=True
        )
    ]
    return {
        "size": size,
        "subscribed": lead["subscribed"] + share["subscribed"],
        "connect_seconds": max(lead["connect_seconds"], share["connect_seconds"]),
        "messages": lead["messages"],
        "deliveries": lead["deliveries"] + share["deliveries"],
        "expected_deliveries": (lead["subscribed"] + share["subscribed"]) * lead["messages"],
        "lost": lead["lost"] + share["lost"],
        "p50_ms": percentile(samples, 0.5),
        "p99_ms": percentile(samples, 0.99),
        "max_ms": round(samples[-1], 1) if samples else None,
        "publish_p99_ms": lead["publish_p99_ms"],
        "cpu_seconds": {"first balancer": lead["cpu_seconds"], "second": share["cpu_seconds"]},
        "slowest_per_message_ms": slowest,
    }


def gather(work: Path, revision: str) -> dict[str, Any]:
    sizes = sorted(int(p.name.split("-")[1]) for p in work.glob("steady-*-lead.json"))
    load = {name: read(work / f"load-{name}.json") for name in ("steady", "deploy")}
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": revision,
        "steady": [steady_run(work, size) for size in sizes],
        "deploy_effect": {
            "rate_per_second": 5,
            "deploy_seconds": int((work / "rolling-deploy.seconds").read_text()),
            **{name: {k: report[k] for k in LOAD_KEYS} for name, report in load.items()},
        },
    }


def render(report: dict[str, Any]) -> str:
    effect = report["deploy_effect"]
    lines = [
        "# Fleet benchmark",
        "",
        "The push channel across a fleet (`playbooks/examples/fleet.yml`): a Redis host,",
        "web hosts on Debian 12 and 13, and two HAProxy balancers (one HAProxy holds two",
        "connections a subscriber, and no process here may hold 20,000 files), five",
        "containers on one 2-core machine; made by `bench/fleet.sh`. Every client runs on a",
        "balancer's loopback, through its HAProxy; the push sidecars listen on unix",
        "sockets (`bench/fleet_vars.yml`).",
        "",
        f"Run {report['when']}, revision {report['revision']}.",
        "",
        "## Steady",
        "",
        "N subscribers of one channel, half through each balancer (`bench/push_bench.py",
        "--targets fleet`, its lean client), one message a second published by the demo",
        "application through the first balancer, each carrying its publish time.",
        "",
        "| Subscribers | Subscribed in | Messages | p50 | p99 | max | Lost | One host's target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["steady"]:
        target = SINGLE_HOST_TARGETS_MS.get(run["size"])
        lines.append(
            f"| {run['subscribed']:,} of {run['size']:,} | {run['connect_seconds']} s | "
            f"{run['messages']} | {run['p50_ms']} ms | {run['p99_ms']} ms | "
            f"{run['max_ms']} ms | {run['lost']:,} | "
            f"{f'p99 < {target:,} ms' if target else '-'} |"
        )
    lines += [
        "",
        "## A rolling deploy's effect",
        "",
        f"{effect['steady']['clients']:,} subscribers through the first balancer",
        "(`molecule/push_load.py`, which reconnects and resumes as `push.js` does) while",
        f"the application publishes {effect['rate_per_second']} messages a second through",
        "it: 60 s without a deploy, then through a rolling deploy of both web hosts",
        f"({effect['deploy_seconds']} s: each drained, taken out, converged, put back).",
        "Delay from the stream entry's time to receipt.",
        "",
        "| Run | Published | Deliveries | p50 | p99 | max | Reconnects | Lost | Duplicated"
        " | Resets |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label in (("steady", "without a deploy"), ("deploy", "during the deploy")):
        run = effect[name]
        latency = run["latency_ms"]
        lines.append(
            f"| {label} | {run['published']:,} | {run['received_total']:,} | "
            f"{latency['p50']} ms | {latency['p99']} ms | {latency['max']} ms | "
            f"{run['reconnects_total']:,} | {run['missing_total']:,} | "
            f"{run['duplicates_total']:,} | {run['resets_total']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="the directory bench/fleet.sh filled")
    parser.add_argument("--revision", default="unknown")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, required=True)
    args = parser.parse_args()
    report = gather(args.work, args.revision)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    args.markdown.write_text(render(report), encoding="utf-8")
    print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
