"""Shared setup for the unit tests.

The role installs files/mod_wsgi_ws_sidecar/ as a package, so the tests import it from files/;
molecule/wsclient.py, the tests' WebSocket client, comes from molecule/.
The collection's Python (plugins/) imports itself by its full name, as Ansible
loads it: the tests reach it through a link ansible_collections/mod_wsgi_ws_sidecar/
apache -> the repository, in a temporary directory on sys.path.
Every tests/fixtures/scoreboard-*.json recording feeds any test taking a `scoreboard`
argument, so new recordings are picked up without touching the tests.
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES_DIR = ROOT / "files"
MOLECULE_DIR = ROOT / "molecule"
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
SCOREBOARD_FILES = sorted(FIXTURES_DIR.glob("scoreboard-*.json"))

if str(FILES_DIR) not in sys.path:
    sys.path.insert(0, str(FILES_DIR))
# Last, so that molecule/conftest.py never stands in for this one.
if str(MOLECULE_DIR) not in sys.path:
    sys.path.append(str(MOLECULE_DIR))

COLLECTIONS_DIR = Path(tempfile.mkdtemp(prefix="mws-collections-"))
atexit.register(shutil.rmtree, COLLECTIONS_DIR, ignore_errors=True)
_link = COLLECTIONS_DIR / "ansible_collections/mod_wsgi_ws_sidecar/apache"
_link.parent.mkdir(parents=True)
_link.symlink_to(ROOT)
sys.path.insert(0, str(COLLECTIONS_DIR))


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
