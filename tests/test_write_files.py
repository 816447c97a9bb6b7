"""The role's one-round-trip file writer (plugins/modules/write_files.py),
on real files in a temporary directory, and what a rejected configuration
rolls back from its results."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest
from ansible.plugins.filter.core import to_nice_json
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.filter.rollback import rollback
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.modules.write_files import (
    EntryError,
    apply_all,
)

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def entry(dest: Path, **fields) -> dict:
    return {
        "dest": str(dest),
        "state": "file",
        "owner": OWNER,
        "group": GROUP,
        "mode": "0644",
        **fields,
    }


def apply(*entries: dict, check: bool = False) -> tuple[list[dict], list[dict]]:
    results: list[dict] = []
    diffs = apply_all(list(entries), check, results)
    return results, diffs


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_created_with_its_mode_and_reported_new(tmp_path: Path) -> None:
    site = tmp_path / "site.conf"
    results, diffs = apply(entry(site, content="Listen 80\n", mode="0640"))
    assert site.read_text() == "Listen 80\n" and mode_of(site) == 0o640
    assert results == [
        {
            "dest": str(site),
            "state": "file",
            "changed": True,
            "created": True,
            "owner": OWNER,
            "group": GROUP,
            "mode": "0640",
        }
    ]
    assert diffs[0]["before"] == "" and diffs[0]["after"] == "Listen 80\n"


def test_the_same_content_again_changes_nothing_and_shows_no_diff(tmp_path: Path) -> None:
    site = tmp_path / "site.conf"
    apply(entry(site, content="Listen 80\n"))
    written = site.stat().st_mtime_ns
    results, diffs = apply(entry(site, content="Listen 80\n", backup=True))
    assert results[0]["changed"] is False and diffs == []
    assert site.stat().st_mtime_ns == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.conf"]


def test_a_changed_file_keeps_a_backup_that_rollback_restores(tmp_path: Path) -> None:
    site = tmp_path / "site.conf"
    apply(entry(site, content="old\n"))
    results, diffs = apply(entry(site, content="new\n", backup=True))
    backup = Path(results[0]["backup_file"])
    assert site.read_text() == "new\n" and backup.read_text() == "old\n"
    assert results[0]["created"] is False
    assert (diffs[0]["before"], diffs[0]["after"]) == ("old\n", "new\n")
    undo = rollback([{"changed": True, "results": results}])
    assert undo["restore"] == [
        {
            "dest": str(site),
            "backup_file": str(backup),
            "owner": OWNER,
            "group": GROUP,
            "mode": "0644",
        }
    ]
    assert undo["backups"] == [str(backup)] and undo["created"] == []


def test_rollback_removes_the_files_a_run_created_and_leaves_the_rest(tmp_path: Path) -> None:
    kept, new = tmp_path / "kept.conf", tmp_path / "new.conf"
    apply(entry(kept, content="x\n"))
    results, _ = apply(entry(kept, content="x\n"), entry(new, content="y\n"))
    assert rollback([{"changed": True, "results": results}])["created"] == [str(new)]


def test_a_mode_change_alone_is_a_change_but_neither_new_nor_backed_up(tmp_path: Path) -> None:
    secret = tmp_path / "a.secret"
    apply(entry(secret, content="s\n", mode="0644"))
    results, _ = apply(entry(secret, content="s\n", mode="0600", backup=True))
    assert results[0]["changed"] is True and results[0]["created"] is False
    assert "backup_file" not in results[0] and mode_of(secret) == 0o600
    undo = rollback([{"changed": True, "results": results}])
    assert undo["created"] == [] and undo["restore"] == []


def test_json_is_written_as_to_nice_json_writes_it(tmp_path: Path) -> None:
    settings = {
        "name": "metrics",
        "max_clients": 500,
        "origins": [],
        "prefix": "/metrics",
        "ratio": 0.5,
    }
    path = tmp_path / "metrics.json"
    apply(entry(path, json=settings))
    assert path.read_text() == to_nice_json(settings, indent=2) + "\n"


@pytest.mark.parametrize("content", [{"a": 1}, ["x"], None, 3])
def test_content_that_is_not_text_is_refused(tmp_path: Path, content: object) -> None:
    with pytest.raises(EntryError, match="must be text"):
        apply(entry(tmp_path / "f", content=content))
    assert not (tmp_path / "f").exists()


def test_check_mode_reports_the_changes_and_writes_nothing(tmp_path: Path) -> None:
    site, stale = tmp_path / "site.conf", tmp_path / "stale.py"
    stale.write_text("x")
    results, diffs = apply(
        {
            "dest": str(tmp_path / "d"),
            "state": "directory",
            "owner": OWNER,
            "group": GROUP,
            "mode": "0755",
        },
        entry(site, content="Listen 80\n"),
        {"dest": str(stale), "state": "absent"},
        check=True,
    )
    assert [r["changed"] for r in results] == [True, True, True] and len(diffs) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stale.py"]


def test_a_directory_gets_its_setgid_mode(tmp_path: Path) -> None:
    sockets = tmp_path / "sockets"
    directory = {
        "dest": str(sockets),
        "state": "directory",
        "owner": OWNER,
        "group": GROUP,
        "mode": "2750",
    }
    results, _ = apply(directory)
    assert results[0] == {"path": str(sockets), "state": "directory", "changed": True}
    assert mode_of(sockets) == 0o2750
    assert apply(directory)[0][0]["changed"] is False


def test_an_existing_directory_gets_its_mode_back(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir(mode=0o777)
    conf.chmod(0o777)
    directory = {
        "dest": str(conf),
        "state": "directory",
        "owner": OWNER,
        "group": GROUP,
        "mode": "0750",
    }
    results, diffs = apply(directory, check=True)
    assert results[0]["changed"] is True and mode_of(conf) == 0o777
    assert (diffs[0]["before"]["mode"], diffs[0]["after"]["mode"]) == ("0o777", "0o750")
    apply(directory)
    assert mode_of(conf) == 0o750


def test_absent_removes_files_and_directory_trees(tmp_path: Path) -> None:
    tree = tmp_path / "express"
    (tree / "conf").mkdir(parents=True)
    (tree / "conf" / "httpd.conf").write_text("x")
    single = tmp_path / "express.args"
    single.write_text("--port")
    results, _ = apply(
        {"dest": str(tree), "state": "absent"},
        {"dest": str(single), "state": "absent"},
        {"dest": str(tmp_path / "never"), "state": "absent"},
    )
    assert [r["changed"] for r in results] == [True, True, False]
    assert list(tmp_path.iterdir()) == []


def test_if_empty_keeps_a_directory_that_holds_someone_elses_files(tmp_path: Path) -> None:
    dropins = tmp_path / "apache2.service.d"
    dropins.mkdir()
    (dropins / "theirs.conf").write_text("x")
    gone = {"dest": str(dropins), "state": "absent", "if_empty": True}
    assert apply(gone)[0][0]["changed"] is False and dropins.is_dir()
    (dropins / "theirs.conf").unlink()
    assert apply(gone)[0][0]["changed"] is True and not dropins.exists()


def test_a_failure_names_the_path_and_keeps_what_was_applied_before_it(tmp_path: Path) -> None:
    results: list[dict] = []
    with pytest.raises(EntryError, match=r"missing/site\.conf: its directory does not exist"):
        apply_all(
            [
                entry(tmp_path / "first", content="1\n"),
                entry(tmp_path / "missing/site.conf", content="x"),
            ],
            False,
            results,
        )
    assert [r["dest"] for r in results] == [str(tmp_path / "first")]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"owner": "no-such-user-mws"}, "no user no-such-user-mws"),
        ({"group": "no-such-group-mws"}, "no group no-such-group-mws"),
        ({"mode": None}, "a mode is required"),
        ({"mode": "rw-r--r--"}, "is not octal"),
    ],
)
def test_bad_ownership_or_mode_is_named(tmp_path: Path, fields: dict, words: str) -> None:
    with pytest.raises(EntryError, match=words):
        apply(entry(tmp_path / "f", content="x", **fields))


def test_a_directory_where_a_file_belongs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "site.conf").mkdir()
    with pytest.raises(EntryError, match="is not a regular file"):
        apply(entry(tmp_path / "site.conf", content="x"))
