"""The files each sidecar has on the host, as entries of the module
mod_wsgi_ws_sidecar.apache.write_files: its secret and settings (filled in
with the secrets on the host by the filter with_secrets), its service
script, and its unix socket's directory. Part of the plan
(plugins/module_utils/plan.py); the package's files are the plan's
`package` (kinds.py)."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.kinds import (
    KINDS,
    PACKAGE,
    PUSH,
)

BUILTIN_SCRIPT = """\
# mod_wsgi service script of the {name} WebSocket sidecar (the built-in
# {what}): WSGIImportScript imports it once into its daemon process group,
# and run_service() serves until the process ends.
from {package} import {entry}

{entry}.run_service({settings})
"""
WHAT = {"dashboard": "metrics dashboard", "push_sidecar": "push channel"}

USER_SCRIPT = """\
# mod_wsgi service script of the {name} WebSocket sidecar: WSGIImportScript
# imports it once into its daemon process group, and it runs the sidecar's
# own script; if that fails, the process ends and mod_wsgi starts another.
from {package} import runner

runner.run({script}, {quoted_name})
"""


def service_script(sidecar: Mapping[str, Any], conf_dir: str, header: str) -> str:
    """What WSGIImportScript imports for the sidecar: its kind's entry
    point in the package, or the runner around the user's own script."""
    kind = KINDS[sidecar["kind"]]
    if kind.builtin:
        body = BUILTIN_SCRIPT.format(
            name=sidecar["name"],
            what=WHAT[kind.entry],
            package=PACKAGE,
            entry=kind.entry,
            settings=json.dumps(f"{conf_dir}/{sidecar['name']}.json"),
        )
    else:
        body = USER_SCRIPT.format(
            name=sidecar["name"],
            package=PACKAGE,
            script=json.dumps(sidecar["script"]),
            quoted_name=json.dumps(sidecar["name"]),
        )
    return f"{header}\n{body}"


def sidecar_files(
    sidecars: Sequence[Mapping[str, Any]], v: Mapping[str, Any], c: Mapping[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """write_files entries by group: `private` (secret_of marks where the
    sidecar's secret goes), `scripts`, `socket_dirs` and `socket_leftovers`
    (a file other than a socket at a default socket path, cleared), and
    `run_dir_keep`, the names of the socket directories in use in RUN_DIR."""
    conf = c["conf_dir"]
    unix = [s for s in sidecars if s["listener"] == "unix"]
    private = []
    for s in sidecars:
        private.append(
            {"dest": f"{conf}/{s['name']}.secret", "mode": "0600", "secret_of": s["name"]}
        )
        private.append(
            {
                "dest": f"{conf}/{s['name']}.json",
                "json": s["settings"],
                "group": v["group"],
                "mode": "0640",
                "backup": True,
                "secret_of": s["name"],
                # A push sidecar's also holds the Redis password and the token secret;
                # a fleet's dashboard's, the Redis password.
                "push_secrets": s["kind"] == PUSH.name,
                "fleet_secret": "fleet" in s["settings"],
            }
        )
    return {
        "private": private,
        "scripts": [
            {
                "dest": f"{conf}/{s['name']}.py",
                "content": service_script(s, conf, c["managed_header"]),
                "group": v["group"],
                "mode": "0640",
                "backup": True,
            }
            for s in sidecars
        ],
        # Only the sidecar's user and Apache's group may enter; setgid makes
        # the socket Apache's group too, whoever the sidecar runs as.
        "socket_dirs": [
            {
                "dest": s["socket_dir"],
                "state": "directory",
                "owner": v["user"],
                "group": c["apache_group"],
                "mode": "2750",
            }
            for s in unix
        ],
        "run_dir_keep": sorted(
            {
                posixpath.basename(s["socket_dir"])
                for s in unix
                if posixpath.dirname(s["socket_dir"]) == c["run_dir"]
            }
        ),
        "socket_leftovers": [
            {"dest": s["socket"], "state": "absent", "unless_socket": True}
            for s in unix
            if s["own_socket_dir"]
        ],
    }
