"""What to undo when Apache rejects the configuration a run wrote.

The role's tasks that write a file or change an Apache link register their
result under one prefix (vars/main.yml, __mod_wsgi_ws_sidecar_written_prefix);
tasks/commit.yml hands every such result to this filter, so a new task is
rolled back by its name alone, with no list to keep.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

# Each Debian Apache helper and the one that undoes it.
INVERSE = {
    "a2ensite": "a2dissite",
    "a2dissite": "a2ensite",
    "a2enconf": "a2disconf",
    "a2disconf": "a2enconf",
    "a2enmod": "a2dismod",
    "a2dismod": "a2enmod",
}


def changed_results(results: Sequence[Any]) -> list[Mapping[str, Any]]:
    """The changed results among registered results, loops flattened."""
    flat: list[Mapping[str, Any]] = []
    for result in results:
        if not isinstance(result, Mapping):
            continue
        if isinstance(result.get("results"), list):
            flat += changed_results(result["results"])
        elif result.get("changed"):
            flat.append(result)
    return flat


def undo_command(result: Mapping[str, Any]) -> str | None:
    """The command that undoes a changed a2en*/a2dis* run, else None."""
    words = result.get("cmd")
    words = shlex.split(words) if isinstance(words, str) else list(words or [])
    if not words or words[0] not in INVERSE:
        return None
    return shlex.join([INVERSE[words[0]], *words[1:]])


def rollback(results: Sequence[Any]) -> dict[str, list[Any]]:
    """From the run's registered results: files to restore from their backups,
    files the run created (to remove), every backup, the link commands to
    undo, last change first, and whether a change needs Apache restarted."""
    changed = changed_results(results)
    files = [r for r in changed if "dest" in r]
    restore = [
        {k: r[k] for k in ("dest", "backup_file", "owner", "group", "mode") if k in r}
        for r in files
        if "backup_file" in r
    ]
    undo = [cmd for r in changed if (cmd := undo_command(r))]
    return {
        # A change write_files marks as needing a full restart of Apache.
        "restart": any(r.get("restart") for r in changed),
        "restore": restore,
        # write_files says whether it created a file; copy and template
        # leave no backup of a file they created.
        "created": [r["dest"] for r in files if r.get("created", "backup_file" not in r)],
        "backups": [r["backup_file"] for r in files if "backup_file" in r],
        "undo": undo[::-1],
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"rollback": rollback}
