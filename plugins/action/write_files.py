"""The controller's half of mod_wsgi_ws_sidecar.apache.write_files: reads
each entry's `src` here, flattens entries given as lists (the plan's
per-sidecar files) and drops those whose `only_if` is false, so that the
module writes everything in one round trip."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(["files"])

    def _entries(self, items: object) -> list[dict]:
        """The entries, lists among them flattened, those whose only_if is
        false left out, each src read into content."""
        if not isinstance(items, list):
            raise AnsibleActionFail(
                f"write_files: files must be a list, not {type(items).__name__}"
            )
        entries: list[dict] = []
        for item in items:
            if isinstance(item, list):
                entries += self._entries(item)
                continue
            if not isinstance(item, dict):
                raise AnsibleActionFail(f"write_files: each entry must be a mapping, not {item!r}")
            entry = dict(item)
            if not boolean(entry.pop("only_if", True), strict=True):
                continue
            src = entry.pop("src", None)
            if src is not None:
                path = self._find_needle("files", src)
                with open(path, encoding="utf-8") as stream:
                    entry["content"] = stream.read()
            entries.append(entry)
        return entries

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # not used: the module needs no files of its own on the host
        args = {"files": self._entries(self._task.args.get("files"))}
        result.update(
            self._execute_module(
                module_name="mod_wsgi_ws_sidecar.apache.write_files",
                module_args=args,
                task_vars=task_vars,
            )
        )
        return result
