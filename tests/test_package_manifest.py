"""The package the role installs (files/mod_wsgi_ws_sidecar/) and its one
manifest, the kinds table (plugins/module_utils/kinds.py): the copy step,
the install check and the collection's build all read it, so a file under
the package that it does not list would be shipped to no host."""

from __future__ import annotations

import ast
from pathlib import Path

from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.filter import plan as plan_filter
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.kinds import (
    CORE_FILES,
    KINDS,
    package_files,
)

PACKAGE = Path(__file__).resolve().parents[1] / "files/mod_wsgi_ws_sidecar"


def test_every_file_of_the_package_is_in_the_manifest_and_back() -> None:
    on_disk = {p.name for p in PACKAGE.iterdir() if p.is_file()}
    assert on_disk == set(package_files(set()))


def test_each_kind_gets_the_modules_its_entry_imports() -> None:
    """What a kind's entry point imports from the package, followed through
    the package, is all in CORE_FILES and the kind's own files."""
    for kind in KINDS.values():
        shipped = set(CORE_FILES) | set(kind.files)
        todo, seen = [f"{kind.entry}.py"], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            assert name in shipped, (kind.name, name)
            tree = ast.parse((PACKAGE / name).read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 1:
                    todo += [f"{alias.name}.py" for alias in node.names if not node.module]
                    todo += [f"{node.module}.py"] if node.module else []


def test_only_the_kinds_present_are_installed_the_rest_removed() -> None:
    wanted = package_files({"push"})
    assert wanted["push_sidecar.py"] and wanted["core.py"] and not wanted["dashboard.py"]
    assert not any(package_files({"script"})[name] for name in KINDS["push"].files)


def test_a_package_missing_a_file_stops_the_plan_naming_it(tmp_path: Path) -> None:
    for name in package_files(set()):
        if name != "push.js":
            (tmp_path / name).write_text("")
    found = plan_filter.plan({}, {"package_src": str(tmp_path)})
    assert found == {
        "problems": [
            f"Files of the package the role installs are missing on the controller, in"
            f" {tmp_path}: push.js. Install the collection, not the role alone (see the"
            f" README's Install section)."
        ]
    }
