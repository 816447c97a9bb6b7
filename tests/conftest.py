"""Shared setup for the sidecar unit tests.

files/sidecar.py is deployed as a plain module, so the tests import it from files/.
Every tests/fixtures/scoreboard-*.json recording feeds any test taking a `scoreboard`
argument, so new recordings are picked up without touching the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES_DIR = ROOT / "files"
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
SCOREBOARD_FILES = sorted(FIXTURES_DIR.glob("scoreboard-*.json"))

if str(FILES_DIR) not in sys.path:
    sys.path.insert(0, str(FILES_DIR))


def load_scoreboard(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scoreboard" in metafunc.fixturenames:
        metafunc.parametrize(
            "scoreboard",
            [load_scoreboard(path) for path in SCOREBOARD_FILES],
            ids=[path.stem for path in SCOREBOARD_FILES],
        )


@pytest.fixture
def synthetic() -> dict[str, Any]:
    return load_scoreboard(FIXTURES_DIR / "scoreboard-synthetic.json")
