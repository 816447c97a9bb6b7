"""The rules that need the host: what the role looks at there
(`what_to_look_at`, part of the plan), and what it makes of what
plugins/modules/host_facts.py saw (`host_plan`, through the filter of the
same name): every problem at once, each naming the variable at fault, and
which mod_wsgi Apache loads. The rules that need no host are the plan's
(plugins/module_utils/plan.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.kinds import MODES

DEBIAN_PYTHON = "/usr/bin/python3"
SIDECARS = "mod_wsgi_ws_sidecar_sidecars"
# PIDs left for everything on the host but Apache's worker threads (its
# daemon processes, the sidecars' and the system's own).
TASK_MARGIN = 4096


def what_to_look_at(
    v: Mapping[str, Any],
    c: Mapping[str, Any],
    sidecars: Sequence[Mapping[str, Any]],
    internal: Mapping[str, Any],
    venv: str,
    static: Sequence[Mapping[str, Any]],
    open_files: int,
    threads: int,
) -> dict[str, Any]:
    """The inputs of host_facts and of the rules, from the variables."""
    tls_files = (
        [
            ["mod_wsgi_ws_sidecar_tls_certificate", v["tls_certificate"]],
            ["mod_wsgi_ws_sidecar_tls_certificate_key", v["tls_certificate_key"]],
        ]
        if v["tls"]
        else []
    )
    # A leftover at the role's own socket path (RUN_DIR/NAME/) is the role's
    # to clear (tasks/sidecars.yml); anywhere else it may be someone else's.
    sockets = [
        [s["index"], s["socket"]]
        for s in sidecars
        if s["listener"] == "unix" and not s["own_socket_dir"]
    ]
    scripts = [[s["index"], s["script"]] for s in sidecars if not s["builtin"]]
    static_dirs = [[s["index"], s["directory"]] for s in static]
    ports = [[s["index"], s["port"]] for s in sidecars if s["listener"] == "tcp"]
    python = [venv, f"{venv}/bin/python", v["venv_python"]] if venv else []
    ca_bundle = [v["pip_ca_bundle"]] if v["pip_ca_bundle"] else []
    paths = [p for _index, p in tls_files + sockets + scripts + static_dirs] + python + ca_bundle
    return {
        "paths": list(dict.fromkeys(paths)),
        "bind": internal["address"] if internal else "",
        "ports": [port for _index, port in ports],
        "interpreters": [DEBIAN_PYTHON, f"{venv}/bin/python", v["venv_python"]] if venv else [],
        "tls_files": tls_files,
        "sockets": sockets,
        "scripts": scripts,
        "static_dirs": static_dirs,
        "sidecar_ports": ports,
        "open_files": open_files,
        "threads": threads,
        "venv": venv,
        "venv_python": v["venv_python"],
        "pip_ca_bundle": v["pip_ca_bundle"],
        "mod_wsgi_source": v["mod_wsgi_source"],
        # mod_wsgi from PyPI always (mod_wsgi-express's mode): the kinds table's own_venv.
        "pypi_mod_wsgi": MODES[v["mode"]].own_venv if v["mode"] in MODES else False,
        "run_dir": c["run_dir"],
    }


def kind(path_facts: Mapping[str, bool]) -> str:
    if path_facts["islnk"]:
        return "symbolic link"
    if path_facts["isdir"]:
        return "directory"
    return "regular file" if path_facts["isreg"] else "file"


def port_problems(facts: Mapping[str, Any], look: Mapping[str, Any], host: str) -> list[str]:
    """A program already listening where a sidecar would (a Listen of another
    Apache site, a forgotten standalone server) keeps the sidecar from
    binding and gets its clients from Apache."""
    problems = []
    for index, port in look["sidecar_ports"]:
        held_by = facts["holders"].get(str(port), [])
        if held_by:
            problems.append(
                f"{SIDECARS}[{index}].port {port} on {host} is taken by {'; '.join(held_by)}:"
                " the sidecar could not bind it, and Apache would send its clients to that"
                " program. Stop that program, or choose another port."
            )
    return problems


def host_plan(
    facts: Mapping[str, Any], look: Mapping[str, Any], host: str, check_mode: bool = False
) -> dict[str, Any]:
    """`problems` (sentences, all at once) and `use_pypi_module`."""
    paths = facts["paths"]
    problems = []
    if facts["bind_error"]:
        # Apache's configuration test does not bind, and a reload that cannot stops Apache.
        problems.append(
            f"mod_wsgi_ws_sidecar_internal_listen: this host has no address {look['bind']}"
            f" to listen on ({facts['bind_error']})."
        )
    for variable, path in look["tls_files"]:
        # A missing file would make Apache refuse the whole configuration.
        if not paths[path]["isreg"]:
            problems.append(
                f"{variable} must be the absolute path of a file on the host when"
                f' mod_wsgi_ws_sidecar_tls is true; "{path}" is not a file on {host}.'
            )
    for index, path in look["sockets"]:
        found = paths[path]
        if found["exists"] and (found["islnk"] or not found["issock"]):
            problems.append(
                f"{SIDECARS}[{index}].socket: {path} on {host} is a {kind(found)}, not a"
                " socket, so the sidecar could not listen there. The role clears such"
                f" leftovers only at its own socket paths ({look['run_dir']}/NAME/);"
                " remove it, or choose another path."
            )
    # Check mode leaves these: a play may be about to copy the script in.
    for index, path in [] if check_mode else look["scripts"]:
        if not paths[path]["isreg"]:
            problems.append(
                f"{SIDECARS}[{index}].script: {path} is not a file on {host}. Put the"
                " service script there (before the role runs) or correct the path."
            )
    # Likewise: a play may be about to run collectstatic.
    for index, path in [] if check_mode else look["static_dirs"]:
        if not paths[path]["isdir"]:
            problems.append(
                f"mod_wsgi_ws_sidecar_static_files[{index}].directory: {path} is not a"
                f" directory on {host}. Create it (Django: collectstatic) before the role"
                " runs, or correct the path."
            )
    problems += port_problems(facts, look, host)
    limit = facts["open_files_limit"]
    if limit != "unlimited" and int(limit) < look["open_files"]:
        problems.append(
            f"The planned load needs {look['open_files']} open files per Apache process (a"
            " sidecar process holds one per client, an Apache child three per WebSocket), but"
            f" this host's services may have at most {limit}. Give the built-in sidecars"
            " more processes (their processes share the clients), lower the sidecars'"
            " max_clients (mod_wsgi_ws_sidecar_capacity_websockets) or raise the host's"
            " limit."
        )
    tasks = facts.get("task_limit", "unlimited")
    if tasks != "unlimited" and int(tasks) < look["threads"] + TASK_MARGIN:
        problems.append(
            f"The planned load needs {look['threads']} Apache worker threads (one per"
            f" WebSocket and HTTP request, all started up front), and every thread takes a"
            f" PID, but this host's kernel allows {tasks} processes and threads in all"
            f" (kernel.pid_max, kernel.threads-max) and keeps {TASK_MARGIN} for everything"
            " else. Lower mod_wsgi_ws_sidecar_capacity_websockets or the sidecars'"
            " max_clients, or raise kernel.pid_max on the host."
        )
    use_pypi = False
    if look["venv"]:
        venv, venv_python = look["venv"], look["venv_python"]
        in_venv = f"{venv}/bin/python"
        exists = paths[venv]["exists"]
        # An existing directory must be a virtual environment already; a
        # missing one needs its interpreter.
        if (exists and not paths[in_venv]["executable"]) or (
            not exists and not paths[venv_python]["executable"]
        ):
            problems.append(
                f'mod_wsgi_ws_sidecar_venv "{venv}" must be a virtual environment (with'
                f" bin/python) or not exist yet, and mod_wsgi_ws_sidecar_venv_python"
                f' "{venv_python}" an executable that can create it.'
            )
        # Debian's mod_wsgi is built for Debian's python3; a virtual
        # environment on another Python needs mod_wsgi built for that one.
        versions = facts["python_versions"]
        debian = versions.get(DEBIAN_PYTHON, "")
        theirs = versions.get(in_venv if exists else venv_python, "")
        use_pypi = look["mod_wsgi_source"] == "pypi" or (
            look["mod_wsgi_source"] == "auto" and debian != theirs
        )
        if look["mod_wsgi_source"] == "distro" and debian != theirs:
            problems.append(
                "mod_wsgi_ws_sidecar_mod_wsgi_source=distro needs the virtual environment on"
                f" Debian's Python {debian}, but it runs Python {theirs}; use auto or pypi."
            )
    if look["pip_ca_bundle"] and not paths[look["pip_ca_bundle"]]["isreg"]:
        problems.append(
            f'mod_wsgi_ws_sidecar_pip_ca_bundle "{look["pip_ca_bundle"]}" is not a file on'
            " the host."
        )
    return {
        "problems": problems,
        "use_pypi_module": look["pypi_mod_wsgi"] or look["mod_wsgi_source"] == "pypi" or use_pypi,
    }
