"""Writes a set of files and directories, or removes them, in one call.

Each ansible.builtin.copy, template or file task is one round trip to the
host; the role writes about twenty files, so a run that changes nothing
spent most of its time on those round trips. This module takes them all at
once (contents rendered on the controller, as the task's arguments) and
reports each the way copy and file do, so that the rollback rule
(plugins/filter/rollback.py) reads its results like theirs.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: write_files
short_description: Write, create or remove many files and directories in one round trip
description:
  - Each entry is a regular file with the given content, a directory, or a
    path to remove. Entries are applied in order, so a directory listed
    before the files in it is there when they are written.
  - A file is replaced atomically (written beside it, then renamed) only when
    its content differs; owner, group and mode are set either way. With
    I(backup), the previous content is kept beside it as copy's backups are.
  - Entries may also be lists of entries (flattened). Supports check mode
    and diff mode.
options:
  files:
    description: What each path must be, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description: Absolute path.
        type: path
        required: true
      state:
        description:
          - C(file), C(directory) or C(absent).
          - C(pruned) removes what is in the directory I(dest) that matches
            I(patterns) and is not named in I(keep); a missing directory is
            nothing to prune.
        type: str
        choices: [file, directory, absent, pruned]
        default: file
      content:
        description: The file's text (state=file), unless I(json) is given.
        type: raw
      src:
        description: A file on the controller whose text the file gets (read by the action plugin).
        type: path
      only_if:
        description: The entry is left out when false (by the action plugin).
        type: bool
        default: true
      json:
        description: >-
          Data the file holds as JSON, 2-space indented with sorted keys, as
          to_nice_json writes it.
        type: raw
      owner:
        description: The user who owns the file or directory.
        type: str
        default: root
      group:
        description: The group that owns the file or directory.
        type: str
        default: root
      mode:
        description: Octal mode as a string, required for files and directories.
        type: str
      backup:
        description: Keep the previous content of a changed file beside it.
        type: bool
        default: false
      if_empty:
        description: With state=absent, remove a directory only when it is empty.
        type: bool
        default: false
      unless_socket:
        description: With state=absent, leave a unix socket in place.
        type: bool
        default: false
      patterns:
        description: With state=pruned, the shell patterns of the names to remove.
        type: list
        elements: str
      keep:
        description: With state=pruned, the names to keep.
        type: list
        elements: str
      restart:
        description: >-
          A change of this path needs a full restart of Apache, not a
          reload; returned in its result so the role can tell.
        type: bool
        default: false
author: mod_wsgi_ws_sidecar maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Write a site's configuration and its directories in one round trip
  mod_wsgi_ws_sidecar.apache.write_files:
    files:
      - dest: /srv/my-app
        state: directory
        mode: "0755"
      - dest: /srv/my-app/settings.json
        json: {debug: false}
        owner: www-data
        group: www-data
        mode: "0640"
      - dest: /etc/apache2/sites-available/my-app.conf
        src: my-app.conf
        mode: "0644"
        backup: true
      - dest: /etc/apache2/sites-available/old-app.conf
        state: absent
        only_if: "{{ remove_old_app | default(false) }}"
"""

RETURN = r"""
results:
  description: >-
    One per entry, in order: files as copy reports them (dest, changed,
    owner, group, mode, backup_file when a backup was kept) and whether the
    run created them, directories and removals as file does (path, state,
    changed), prunings with the paths they removed; each with restart when
    its entry has it.
  type: list
  returned: always
"""


import fnmatch
import grp
import json
import os
import pwd
import shutil
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

# Diffs of files larger than this are not shown (as Ansible's own max_diff_size).
MAX_DIFF_BYTES = 104448


class EntryError(Exception):
    """An entry that cannot be applied, with the reason."""


def file_text(entry: dict) -> bytes:
    """The bytes a state=file entry must hold."""
    if entry.get("json") is not None:
        text = json.dumps(entry["json"], indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    else:
        text = entry.get("content")
        # Templating may have turned a text that looks like data into data:
        # refuse it rather than write its repr.
        if not isinstance(text, str):
            raise EntryError(f"content of {entry['dest']} must be text, not {type(text).__name__}")
    return text.encode("utf-8")


def wanted_ids(entry: dict) -> tuple[int, int, int]:
    """uid, gid and mode an entry asks for."""
    try:
        uid = pwd.getpwnam(entry["owner"]).pw_uid
    except KeyError:
        raise EntryError(f"{entry['dest']}: no user {entry['owner']} on this host") from None
    try:
        gid = grp.getgrnam(entry["group"]).gr_gid
    except KeyError:
        raise EntryError(f"{entry['dest']}: no group {entry['group']} on this host") from None
    if not entry.get("mode"):
        raise EntryError(f"{entry['dest']}: a mode is required")
    try:
        mode = int(str(entry["mode"]), 8)
    except ValueError:
        raise EntryError(f"{entry['dest']}: mode {entry['mode']!r} is not octal") from None
    return uid, gid, mode


def attributes_differ(info: os.stat_result, uid: int, gid: int, mode: int) -> bool:
    return (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (uid, gid, mode)


def set_attributes(
    path: str, info: os.stat_result, uid: int, gid: int, mode: int, check: bool
) -> dict:
    """Gives the path its owner, group and mode (unless checking); the diff."""
    if not check:
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    before = {"owner": info.st_uid, "group": info.st_gid, "mode": oct(stat.S_IMODE(info.st_mode))}
    return {
        "before_header": path,
        "after_header": path,
        "before": before,
        "after": {"owner": uid, "group": gid, "mode": oct(mode)},
    }


def text_for_diff(data: bytes) -> str:
    if len(data) > MAX_DIFF_BYTES:
        return f"(not shown: {len(data)} bytes)\n"
    return data.decode("utf-8", errors="replace")


def backup_path(dest: str) -> str:
    """Named as ansible.builtin.copy names its backups."""
    return f"{dest}.{os.getpid()}.{time.strftime('%Y-%m-%d@%H:%M:%S~')}"


def write_atomically(dest: str, data: bytes, uid: int, gid: int, mode: int) -> None:
    directory, name = os.path.split(dest)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            os.fchown(stream.fileno(), uid, gid)
            os.fchmod(stream.fileno(), mode)
        os.replace(temporary, dest)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def existing(path: str, look, is_kind, kind: str) -> os.stat_result | None:
    """What `look` (os.stat or os.lstat) finds at the path, None if nothing;
    something other than `kind` there is an error."""
    try:
        info = look(path)
    except FileNotFoundError:
        return None
    if not is_kind(info.st_mode):
        raise EntryError(f"{path} exists and is not {kind}")
    return info


def apply_file(entry: dict, check: bool) -> tuple[dict, dict | None]:
    dest = entry["dest"]
    data = file_text(entry)
    uid, gid, mode = wanted_ids(entry)
    result = {"dest": dest, "state": "file", "changed": False, "created": False}
    result.update(owner=entry["owner"], group=entry["group"], mode=str(entry["mode"]))
    info = existing(dest, os.stat, stat.S_ISREG, "a regular file")
    if info is None and not os.path.isdir(os.path.dirname(dest)):
        raise EntryError(f"{dest}: its directory does not exist")
    before = b""
    if info is not None:
        with open(dest, "rb") as stream:
            before = stream.read()
    diff = None
    if before != data or info is None:
        result["changed"] = True
        result["created"] = info is None
        header = dest if info is not None else f"{dest} (new)"
        diff = {
            "before_header": header,
            "after_header": dest,
            "before": text_for_diff(before),
            "after": text_for_diff(data),
        }
        if not check:
            if entry.get("backup") and info is not None:
                result["backup_file"] = backup_path(dest)
                shutil.copy2(dest, result["backup_file"])
            write_atomically(dest, data, uid, gid, mode)
    elif attributes_differ(info, uid, gid, mode):
        result["changed"] = True
        diff = set_attributes(dest, info, uid, gid, mode, check)
    return result, diff


def apply_directory(entry: dict, check: bool) -> tuple[dict, dict | None]:
    path = entry["dest"]
    uid, gid, mode = wanted_ids(entry)
    result = {"path": path, "state": "directory", "changed": False}
    info = existing(path, os.lstat, stat.S_ISDIR, "a directory")
    if info is None:
        result["changed"] = True
        if not check:
            os.mkdir(path)
            os.chown(path, uid, gid)
            # mkdir applies the umask; setgid needs an explicit chmod too.
            os.chmod(path, mode)
        return result, {
            "before": {"path": path, "state": "absent"},
            "after": {"path": path, "state": "directory"},
        }
    if attributes_differ(info, uid, gid, mode):
        result["changed"] = True
        return result, set_attributes(path, info, uid, gid, mode, check)
    return result, None


def apply_absent(entry: dict, check: bool) -> tuple[dict, dict | None]:
    path = entry["dest"]
    result = {"path": path, "state": "absent", "changed": False}
    if not os.path.lexists(path):
        return result, None
    is_dir = os.path.isdir(path) and not os.path.islink(path)
    if is_dir and entry.get("if_empty") and os.listdir(path):
        return result, None
    if entry.get("unless_socket") and stat.S_ISSOCK(os.lstat(path).st_mode):
        return result, None
    result["changed"] = True
    if not check:
        remove(path)
    return result, {
        "before": {"path": path, "state": "directory" if is_dir else "file"},
        "after": {"path": path, "state": "absent"},
    }


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def apply_pruned(entry: dict, check: bool) -> tuple[dict, dict | None]:
    directory = entry["dest"]
    result = {"path": directory, "state": "pruned", "changed": False, "removed": []}
    if not os.path.isdir(directory):
        return result, None
    keep = set(entry.get("keep") or [])
    patterns = entry.get("patterns") or ["*"]
    for name in sorted(os.listdir(directory)):
        if name not in keep and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            result["removed"].append(os.path.join(directory, name))
    if not result["removed"]:
        return result, None
    result["changed"] = True
    if not check:
        for path in result["removed"]:
            remove(path)
    listing = "".join(f"{path}\n" for path in result["removed"])
    return result, {
        "before_header": f"{directory} (removed)",
        "after_header": directory,
        "before": listing,
        "after": "",
    }


APPLY = {
    "file": apply_file,
    "directory": apply_directory,
    "absent": apply_absent,
    "pruned": apply_pruned,
}


def apply_all(entries: list[dict], check: bool, results: list[dict]) -> list[dict]:
    """Applies the entries in order, appending each one's result to
    `results` (so a failure leaves those already applied there); returns the
    diffs of those that change."""
    diffs = []
    for entry in entries:
        result, diff = APPLY[entry.get("state") or "file"](entry, check)
        if entry.get("restart"):
            result["restart"] = True
        results.append(result)
        if diff:
            diffs.append(diff)
    return diffs


def main() -> None:
    entry_options = {
        "dest": {"type": "path", "required": True},
        "state": {"type": "str", "choices": list(APPLY), "default": "file"},
        "content": {"type": "raw"},
        # The action plugin's: it reads src into content and leaves out the
        # entries whose only_if is false, so the module never sees either.
        "src": {"type": "path"},
        "only_if": {"type": "bool", "default": True},
        "json": {"type": "raw"},
        "owner": {"type": "str", "default": "root"},
        "group": {"type": "str", "default": "root"},
        "mode": {"type": "str"},
        "backup": {"type": "bool", "default": False},
        "if_empty": {"type": "bool", "default": False},
        "unless_socket": {"type": "bool", "default": False},
        "patterns": {"type": "list", "elements": "str"},
        "keep": {"type": "list", "elements": "str"},
        "restart": {"type": "bool", "default": False},
    }
    module = AnsibleModule(
        argument_spec={
            "files": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": entry_options,
            }
        },
        supports_check_mode=True,
    )
    results: list[dict] = []
    try:
        diffs = apply_all(module.params["files"], module.check_mode, results)
    except (EntryError, OSError) as error:
        module.fail_json(
            msg=str(error), changed=any(r["changed"] for r in results), results=results
        )
    outcome = {"changed": any(r["changed"] for r in results), "results": results}
    if module._diff:
        outcome["diff"] = diffs
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
