"""The files each sidecar has on the host, as entries of the module
mod_wsgi_ws_sidecar.apache.write_files: its secret and settings (filled in
with the secrets on the host by the filter with_secrets), its service
script, and its unix socket's directory. Part of the plan
(plugins/module_utils/plan.py); the role's fixed files are listed in its
tasks."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

BUILTIN_SCRIPT = """\
# mod_wsgi service script of the {name} WebSocket sidecar (the built-in
# metrics dashboard): WSGIImportScript imports it once into its daemon
# process group, and run_service() serves until the process ends.
import sidecar

sidecar.run_service({settings})
"""

PUSH_SCRIPT = """\
# mod_wsgi service script of the {name} WebSocket sidecar (the built-in
# push channel): WSGIImportScript imports it once into its daemon process
# group, and run_service() serves until the process ends.
import push_sidecar

push_sidecar.run_service({settings})
"""

USER_SCRIPT = """\
# mod_wsgi service script of the {name} WebSocket sidecar: WSGIImportScript
# imports it once into its daemon process group, and it runs the sidecar's
# own script; if that fails, the process ends and mod_wsgi starts another.
import sidecar_runner

sidecar_runner.run({script}, {quoted_name})
"""


def service_script(sidecar: Mapping[str, Any], conf_dir: str, header: str) -> str:
    """What WSGIImportScript imports for the sidecar: the built-in
    dashboard's entry point, or the runner around the user's own script."""
    if sidecar["builtin"]:
        template = PUSH_SCRIPT if sidecar["kind"] == "push" else BUILTIN_SCRIPT
        body = template.format(
            name=sidecar["name"], settings=json.dumps(f"{conf_dir}/{sidecar['name']}.json")
        )
    else:
        body = USER_SCRIPT.format(
            name=sidecar["name"],
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
                "push_secrets": s["kind"] == "push",
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
