"""The push benchmark's verdict (bench/push_report.py): "met" only if every
subscriber subscribed, every delivery was made and the p99 is under the
target; the refusals are listed with their reasons."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import push_report

MET = "met (all 10,000 subscribed, p99 < 1000 ms, 0 lost)"
MISSED = "missed (all 10,000 subscribed, p99 < 1000 ms, 0 lost)"


def run(**changes: Any) -> dict[str, Any]:
    return {
        "target": "role",
        "size": 10000,
        "subscribed": 10000,
        "messages": 20,
        "deliveries": 200000,
        "lost": 0,
        "p99_ms": 494.0,
        "p50_ms": 240.0,
        "max_ms": 511.0,
        "connect_seconds": 12.5,
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "verdict"),
    [
        ({}, MET),
        # The run of the report that called this "met": 1,108 of 10,000 subscribed.
        ({"subscribed": 1108, "deliveries": 22160, "p99_ms": 772.8}, MISSED),
        ({"deliveries": 199999}, MISSED),
        ({"lost": 1}, MISSED),
        ({"p99_ms": 1000.0}, MISSED),
        ({"p99_ms": None}, MISSED),
        ({"target": "socketio"}, ""),
        ({"size": 300}, ""),
    ],
)
def test_a_verdict_counts_everyone_asked(changes: dict[str, Any], verdict: str) -> None:
    assert push_report.verdict(run(**changes)) == verdict


def test_refusals_are_shown_with_their_reasons() -> None:
    refused = run(
        subscribed=1108,
        refusals={"subscription refused: unavailable": 8892, "handshake refused: 503": 12},
    )
    report = {"machine": {"cpus": 2}, "when": "now", "revision": "r", "runs": [refused]}
    text = push_report.render(report)
    listed = "8,892 x subscription refused: unavailable; 12 x handshake refused: 503"
    assert f"- role, 10,000: {listed}" in text, text
    assert "| 1,108 of 10,000 |" in text and MISSED in text
