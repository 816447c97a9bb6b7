"""What a rejected configuration rolls back (plugins/filter/rollback.py),
from registered results shaped as Ansible's copy, template and command
modules return them."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.filter.rollback import rollback

ROLE = Path(__file__).resolve().parents[1] / "roles/mod_wsgi_ws_sidecar"
INTERNALS = yaml.safe_load((ROLE / "vars/main.yml").read_text())
PREFIX = INTERNALS["__mod_wsgi_ws_sidecar_written_prefix"]

CHANGED_SITE = {
    "changed": True,
    "dest": "/etc/apache2/sites-available/mod_wsgi_ws_sidecar.conf",
    "backup_file": "/etc/apache2/sites-available/mod_wsgi_ws_sidecar.conf.1.2026@10:00~",
    "owner": "root",
    "group": "root",
    "mode": "0644",
    "checksum": "abc",
}
NEW_FILE = {"changed": True, "dest": "/etc/mod_wsgi_ws_sidecar/echo.py", "owner": "root"}
UNCHANGED_FILE = {"changed": False, "dest": "/etc/mod_wsgi_ws_sidecar/m.json"}
SKIPPED = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def loop(*items: dict) -> dict:
    return {"changed": any(i.get("changed") for i in items), "results": list(items)}


def command(cmd: str | list[str], changed: bool = True) -> dict:
    return {"changed": changed, "cmd": cmd, "rc": 0}


def test_a_changed_file_is_restored_from_its_backup_and_the_backup_goes() -> None:
    plan = rollback([CHANGED_SITE, UNCHANGED_FILE, SKIPPED])
    assert plan["restore"] == [
        {k: CHANGED_SITE[k] for k in ("dest", "backup_file", "owner", "group", "mode")}
    ]
    assert plan["backups"] == [CHANGED_SITE["backup_file"]]
    assert plan["created"] == [] and plan["undo"] == []


def test_a_file_the_run_created_is_removed() -> None:
    plan = rollback([loop(UNCHANGED_FILE, NEW_FILE)])
    assert plan["created"] == ["/etc/mod_wsgi_ws_sidecar/echo.py"]
    assert plan["restore"] == [] and plan["backups"] == []


def test_link_changes_are_undone_last_first() -> None:
    plan = rollback(
        [
            command(["a2enmod", "-q", "proxy", "headers"]),
            command("a2enconf mod_wsgi_ws_sidecar_capacity"),
            command("a2ensite mod_wsgi_ws_sidecar", changed=False),
            command("a2dissite 000-default"),
            loop(command("a2dismod -q wsgi")),
        ]
    )
    assert plan["undo"] == [
        "a2enmod -q wsgi",
        "a2ensite 000-default",
        "a2disconf mod_wsgi_ws_sidecar_capacity",
        "a2dismod -q proxy headers",
    ]


def test_other_commands_and_non_results_are_ignored() -> None:
    setup = command(["/opt/venv/bin/mod_wsgi-express", "setup-server", "app.wsgi"])
    plan = rollback([setup, "not a result", None, {}])
    assert plan == {"restart": False, "restore": [], "created": [], "backups": [], "undo": []}


WRITE_FILES = "mod_wsgi_ws_sidecar.apache.write_files"
LINKS = "mod_wsgi_ws_sidecar.apache.apache_links"

# Files Apache's configuration test does not read: a rejected configuration
# has nothing of theirs to put back.
NOT_READ_BY_APACHE = {
    "Write the password file",  # read per request, not by the test
    "Write the push channel's Redis settings",  # Redis's
}


def role_tasks() -> list[tuple[str, dict]]:
    """Every task of the role's task files but rescue steps, with its file."""
    found = []
    for path in sorted((ROLE / "tasks").rglob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            found += [(path.name, inner) for inner in task.get("block", [task])]
    return found


def test_every_file_and_link_task_of_the_role_registers_under_the_prefix() -> None:
    # Rollback finds results by name: a task that writes Apache's or the
    # sidecars' configuration, or changes an Apache link, without the prefix
    # would escape it.
    checked = 0
    for file, task in role_tasks():
        command = task.get("ansible.builtin.command", {})
        words = str(command.get("cmd", "")) or str(command.get("argv", ""))
        links = file != "remove.yml" and ("a2en" in words or "a2dis" in words)
        writes = {"ansible.builtin.copy", "ansible.builtin.template", WRITE_FILES, LINKS} & set(
            task
        )
        # Removals (remove.yml) leave nothing to put back.
        removals = file == "remove.yml" and bool({WRITE_FILES, LINKS} & set(task))
        if (writes and not removals and task["name"] not in NOT_READ_BY_APACHE) or links:
            checked += 1
            assert str(task.get("register", "")).startswith(PREFIX), (file, task["name"])
    assert checked >= 5, checked
