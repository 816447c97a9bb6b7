"""Each mode's leftovers (vars/main.yml) name everything the other mode's
remove.yml takes away: the host checks look only for those, and a run that
finds none skips the removal, so a path missing from the list would stay
on the host for good."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[1] / "roles/mod_wsgi_ws_sidecar"
LEFTOVERS = yaml.safe_load((ROLE / "vars/main.yml").read_text())["__mod_wsgi_ws_sidecar_leftovers"]
APACHE_DIR = "{{ __mod_wsgi_ws_sidecar_apache_dir }}"
# apache_links' kinds and the file a name's link is, in KIND-enabled/.
LINK_SUFFIX = {"mods": ".load", "conf": ".conf", "sites": ".conf"}


def removed_paths(mode: str) -> set[str]:
    """Every path tasks/MODE/remove.yml removes, as the templates it writes them."""
    paths = set()
    for task in yaml.safe_load((ROLE / "tasks" / mode / "remove.yml").read_text()):
        if "mod_wsgi_ws_sidecar.apache.write_files" in task:
            for entry in task["mod_wsgi_ws_sidecar.apache.write_files"]["files"]:
                assert entry["state"] == "absent", entry
                paths.add(entry["dest"])
        if "mod_wsgi_ws_sidecar.apache.apache_links" in task:
            disabled = task["mod_wsgi_ws_sidecar.apache.apache_links"]["disable"]
            for kind, names in disabled.items():
                paths.update(
                    f"{APACHE_DIR}/{kind}-enabled/{name}{LINK_SUFFIX[kind]}" for name in names
                )
    return paths


@pytest.mark.parametrize("mode", ["system", "express"])
def test_leftovers_name_every_path_the_removal_takes(mode: str) -> None:
    removed = removed_paths(mode)
    assert removed, f"tasks/{mode}/remove.yml removes nothing this test can read"
    assert removed <= set(LEFTOVERS[mode]), sorted(removed - set(LEFTOVERS[mode]))


def test_leftovers_are_known_for_exactly_the_two_modes() -> None:
    assert set(LEFTOVERS) == {
        path.name for path in (ROLE / "tasks").iterdir() if (path / "remove.yml").is_file()
    }
