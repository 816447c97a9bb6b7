"""Every module and filter of the collection renders in ansible-doc, on the
ansible-core this suite runs with (the unit suite runs on both ends of the
claimed range), with a description, examples and what it returns."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COLLECTIONS_DIR

ROOT = Path(__file__).resolve().parents[1]
FQCN = "mod_wsgi_ws_sidecar.apache"
ANSIBLE_DOC = str(Path(sys.executable).parent / "ansible-doc")


def filter_names() -> list[str]:
    """The names each plugins/filter/*.py maps in FilterModule.filters()."""
    names = []
    for path in sorted((ROOT / "plugins/filter").glob("*.py")):
        module = importlib.import_module(f"ansible_collections.{FQCN}.plugins.filter.{path.stem}")
        names += list(module.FilterModule().filters())
    return names


PLUGINS = {
    "module": sorted(p.stem for p in (ROOT / "plugins/modules").glob("*.py")),
    "filter": sorted(filter_names()),
}


def test_every_filter_is_found() -> None:
    assert PLUGINS["filter"] == [
        "host_plan",
        "plan",
        "port_problems",
        "rollback",
        "sidecar_secrets",
        "with_secrets",
    ]


@pytest.mark.parametrize("plugin_type", sorted(PLUGINS))
def test_every_plugin_renders_with_examples_and_returns(plugin_type: str) -> None:
    names = [f"{FQCN}.{name}" for name in PLUGINS[plugin_type]]
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_DIR)}
    shown = subprocess.run(
        [ANSIBLE_DOC, "-t", plugin_type, "--json", *names],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    docs = json.loads(shown.stdout)
    assert sorted(docs) == sorted(names)
    for name, entry in docs.items():
        doc = entry["doc"]
        assert doc["short_description"] and doc["description"], name
        assert entry["examples"].strip(), f"{name}: no EXAMPLES"
        assert entry["return"], f"{name}: no RETURN"
    # And as text, the way a user reads it.
    for name in names:
        text = subprocess.run(
            [ANSIBLE_DOC, "-t", plugin_type, name],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert text.returncode == 0 and "EXAMPLES" in text.stdout, (name, text.stderr)
