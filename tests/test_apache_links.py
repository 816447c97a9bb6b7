"""Which Debian Apache helpers the role's link module runs
(plugins/modules/apache_links.py), on a temporary Apache directory, and
how a rejected configuration undoes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.filter.rollback import rollback
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.modules.apache_links import (
    plan_commands,
)


@pytest.fixture()
def apache(tmp_path: Path) -> Path:
    for kind in ("mods", "conf", "sites"):
        (tmp_path / f"{kind}-available").mkdir()
        (tmp_path / f"{kind}-enabled").mkdir()
    return tmp_path


def enabled(apache: Path, kind: str, file: str) -> None:
    (apache / f"{kind}-available" / file).write_text("")
    (apache / f"{kind}-enabled" / file).symlink_to(f"../{kind}-available/{file}")


def test_only_what_is_not_yet_as_asked_is_run_one_command_per_kind(apache: Path) -> None:
    enabled(apache, "mods", "proxy.load")
    enabled(apache, "sites", "000-default.conf")
    commands = plan_commands(
        str(apache),
        enable={"mods": ["proxy", "headers", "wsgi"], "conf": ["capacity"], "sites": ["site"]},
        disable={"sites": ["000-default"], "mods": ["mod_wsgi_ws_sidecar_wsgi"]},
        restart={"wsgi", "capacity"},
    )
    assert [(c["cmd"], c["restart"]) for c in commands] == [
        (["a2dissite", "-q", "000-default"], False),
        (["a2enmod", "-q", "headers", "wsgi"], True),
        (["a2enconf", "-q", "capacity"], True),
        (["a2ensite", "-q", "site"], False),
    ]


def test_nothing_to_do_when_every_link_is_as_asked(apache: Path) -> None:
    enabled(apache, "mods", "proxy.load")
    enabled(apache, "conf", "capacity.conf")
    assert (
        plan_commands(
            str(apache), {"mods": ["proxy"], "conf": ["capacity"]}, {"sites": ["x"]}, set()
        )
        == []
    )


def test_a_dangling_link_still_counts_as_enabled_so_it_is_disabled(apache: Path) -> None:
    (apache / "mods-enabled" / "gone.load").symlink_to("../mods-available/gone.load")
    (command,) = plan_commands(str(apache), {}, {"mods": ["gone"]}, set())
    assert command["cmd"] == ["a2dismod", "-q", "gone"]


def test_nested_lists_of_names_are_flattened(apache: Path) -> None:
    (command,) = plan_commands(str(apache), {"mods": [["proxy", "headers"], "wsgi"]}, {}, set())
    assert command["cmd"] == ["a2enmod", "-q", "proxy", "headers", "wsgi"]


def test_unknown_kinds_are_refused(apache: Path) -> None:
    with pytest.raises(ValueError, match="unknown kinds"):
        plan_commands(str(apache), {"modules": ["proxy"]}, {}, set())


def test_rollback_undoes_the_commands_last_first_and_sees_the_restart(apache: Path) -> None:
    commands = plan_commands(
        str(apache), {"mods": ["headers"], "conf": ["capacity"]}, {}, restart={"capacity"}
    )
    for command in commands:
        command["changed"] = True
    undo = rollback([{"changed": True, "results": commands}])
    assert undo["undo"] == ["a2disconf -q capacity", "a2dismod -q headers"]
    assert undo["restart"] is True
