"""The rules that need the host (plugins/module_utils/host_rules.py), fed
what plugins/modules/host_facts.py reads, and that module's readers on this
machine's own files, sockets and Python."""

from __future__ import annotations

import site
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.host_rules import (
    host_plan,
)
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.modules.host_facts import (
    bind_error,
    describe,
    open_files_limit,
    python_version,
    site_packages,
    task_limit,
)
from test_plan import plan

HOST = "web1"
MISSING = dict.fromkeys(("exists", "isreg", "isdir", "issock", "islnk", "executable"), False)
FILE = {**MISSING, "exists": True, "isreg": True}
EXECUTABLE = {**FILE, "executable": True}
DIRECTORY = {**MISSING, "exists": True, "isdir": True}
SOCKET = {**MISSING, "exists": True, "issock": True}
LINK = {**MISSING, "exists": True, "islnk": True, "isreg": True}


def look(**overrides: Any) -> dict[str, Any]:
    """The plan's host_checks for the role's defaults with some variables set."""
    built = plan(**overrides)
    assert built["problems"] == []
    return built["host_checks"]


def facts(looked: dict[str, Any], **seen: Any) -> dict[str, Any]:
    """What host_facts would return: every path missing unless `paths` says."""
    return {
        "paths": {path: MISSING for path in looked["paths"]} | seen.pop("paths", {}),
        "bind_error": "",
        "holders": {str(port): [] for port in looked["ports"]},
        "open_files_limit": "1048576",
        "task_limit": "4194304",
        "python_versions": {},
        **seen,
    }


def judge(looked: dict[str, Any], check_mode: bool = False, **seen: Any) -> dict[str, Any]:
    return host_plan(facts(looked, **seen), looked, HOST, check_mode)


def only_problem(judged: dict[str, Any]) -> str:
    (problem,) = judged["problems"]
    return problem


def test_a_default_host_has_no_problem() -> None:
    judged = judge(look())
    assert judged == {"problems": [], "use_pypi_module": False}


def test_the_internal_address_must_be_on_the_host() -> None:
    looked = look(internal_listen="192.0.2.1:8081")
    assert looked["bind"] == "192.0.2.1"
    said = only_problem(judge(looked, bind_error="[Errno 99] Cannot assign requested address"))
    assert said.startswith(
        "mod_wsgi_ws_sidecar_internal_listen: this host has no address 192.0.2.1"
    )
    assert "Cannot assign requested address" in said


@pytest.mark.parametrize("seen", [MISSING, DIRECTORY])
def test_tls_files_must_be_files(seen: dict) -> None:
    looked = look(tls=True, tls_certificate="/etc/ssl/c.pem", tls_certificate_key="/etc/ssl/k.pem")
    judged = judge(looked, paths={"/etc/ssl/c.pem": seen, "/etc/ssl/k.pem": FILE})
    said = only_problem(judged)
    assert said.startswith("mod_wsgi_ws_sidecar_tls_certificate must be the absolute path")
    assert '"/etc/ssl/c.pem" is not a file on web1' in said


def test_a_certificate_behind_a_link_is_a_file() -> None:
    looked = look(tls=True, tls_certificate="/etc/ssl/c.pem", tls_certificate_key="/etc/ssl/k.pem")
    assert judge(looked, paths={"/etc/ssl/c.pem": LINK, "/etc/ssl/k.pem": FILE})["problems"] == []


USER_SOCKET = {"name": "dash", "mount": "/d/", "listener": "unix", "socket": "/srv/s/dash.sock"}


@pytest.mark.parametrize(
    ("seen", "words"),
    [
        (FILE, "is a regular file, not a socket"),
        (DIRECTORY, "is a directory, not a socket"),
        ({**MISSING, "exists": True, "islnk": True, "issock": True}, "is a symbolic link"),
    ],
)
def test_only_a_socket_may_be_at_a_socket_path_of_the_users(seen: dict, words: str) -> None:
    looked = look(sidecars=[USER_SOCKET])
    said = only_problem(judge(looked, paths={"/srv/s/dash.sock": seen}))
    assert said.startswith("mod_wsgi_ws_sidecar_sidecars[0].socket: /srv/s/dash.sock on web1")
    assert words in said and "/run/mod_wsgi_ws_sidecar/NAME/" in said


@pytest.mark.parametrize("seen", [MISSING, SOCKET])
def test_nothing_or_a_socket_at_the_users_socket_path_is_fine(seen: dict) -> None:
    looked = look(sidecars=[USER_SOCKET])
    assert judge(looked, paths={"/srv/s/dash.sock": seen})["problems"] == []


def test_the_roles_own_socket_paths_are_not_looked_at() -> None:
    looked = look(sidecars=[{"name": "dash", "mount": "/d/", "listener": "unix"}])
    assert looked["paths"] == [] and looked["sockets"] == []


ECHO = {"name": "echo", "mount": "/ws/", "port": 8770, "script": "/srv/echo.py"}


def test_a_users_script_must_be_on_the_host_except_in_check_mode() -> None:
    looked = look(sidecars=[{"name": "m", "mount": "/m/", "port": 8765}, ECHO])
    said = only_problem(judge(looked))
    assert said.startswith(
        "mod_wsgi_ws_sidecar_sidecars[1].script: /srv/echo.py is not a file on web1"
    )
    assert judge(looked, check_mode=True)["problems"] == []
    assert judge(looked, paths={"/srv/echo.py": FILE})["problems"] == []


def test_a_port_another_program_holds_is_named_with_that_program() -> None:
    looked = look()
    held = {"8765": ["python3 -c ... mws-listener (pid 42)"]}
    said = only_problem(judge(looked, holders=held))
    assert said.startswith("mod_wsgi_ws_sidecar_sidecars[0].port 8765 on web1 is taken by")
    assert "mws-listener (pid 42)" in said


@pytest.mark.parametrize(
    ("limit", "refused"), [("1024", True), ("unlimited", False), ("1048576", False)]
)
def test_the_open_files_the_load_needs_against_the_hosts_limit(limit: str, refused: bool) -> None:
    looked = look()
    problems = judge(looked, open_files_limit=limit)["problems"]
    assert bool(problems) == refused
    if refused:
        assert f"needs {looked['open_files']} open files" in problems[0]
        assert "at most 1024" in problems[0]


VENV = "/opt/app/venv"


@pytest.mark.parametrize(
    ("venv_dir", "venv_python", "interpreter", "refused"),
    [
        (MISSING, MISSING, EXECUTABLE, False),  # created with the interpreter
        (DIRECTORY, EXECUTABLE, MISSING, False),  # adopted
        (DIRECTORY, MISSING, EXECUTABLE, True),  # a directory, not a venv
        (MISSING, MISSING, MISSING, True),  # nothing to create it with
    ],
)
def test_the_venv_can_be_created_or_adopted(venv_dir, venv_python, interpreter, refused) -> None:
    looked = look(venv=VENV, venv_python="/usr/bin/python3.11")
    paths = {VENV: venv_dir, f"{VENV}/bin/python": venv_python, "/usr/bin/python3.11": interpreter}
    problems = judge(looked, paths=paths)["problems"]
    assert bool(problems) == refused
    if refused:
        assert problems[0].startswith(f'mod_wsgi_ws_sidecar_venv "{VENV}" must be a virtual')
        assert "bin/python" in problems[0]


@pytest.mark.parametrize(
    ("source", "theirs", "pypi", "refused"),
    [
        ("auto", "3.11", False, False),
        ("auto", "3.12", True, False),
        ("pypi", "3.11", True, False),
        ("distro", "3.11", False, False),
        ("distro", "3.12", False, True),
    ],
)
def test_which_mod_wsgi_apache_loads(source: str, theirs: str, pypi: bool, refused: bool) -> None:
    looked = look(venv=VENV, venv_python="/usr/bin/python3.12", mod_wsgi_source=source)
    paths = {VENV: DIRECTORY, f"{VENV}/bin/python": EXECUTABLE}
    versions = {"/usr/bin/python3": "3.11", f"{VENV}/bin/python": theirs}
    judged = judge(looked, paths=paths, python_versions=versions)
    assert judged["use_pypi_module"] == pypi
    assert bool(judged["problems"]) == refused
    if refused:
        assert (
            "Debian's Python 3.11, but it runs Python 3.12; use auto or pypi"
            in judged["problems"][0]
        )


def test_express_mode_always_loads_pypis_mod_wsgi() -> None:
    looked = look(mode="express")
    paths = {looked["venv"]: MISSING, "/usr/bin/python3": EXECUTABLE}
    assert judge(looked, paths=paths)["use_pypi_module"] is True


def test_pips_ca_bundle_must_be_a_file() -> None:
    looked = look(pip_ca_bundle="/etc/ssl/missing.crt")
    said = only_problem(judge(looked))
    assert (
        said
        == 'mod_wsgi_ws_sidecar_pip_ca_bundle "/etc/ssl/missing.crt" is not a file on the host.'
    )


def test_every_problem_is_reported_at_once() -> None:
    looked = look(pip_ca_bundle="/etc/ssl/missing.crt", internal_listen="192.0.2.1:8081")
    judged = judge(looked, bind_error="no", open_files_limit="10")
    assert len(judged["problems"]) == 3


# host_facts' readers, on this machine.


def test_describe_tells_files_links_sockets_and_nothing_apart(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock"))
        assert describe(str(tmp_path / "sock"))["issock"] is True
    assert describe(str(tmp_path / "file")) == FILE
    assert describe(str(tmp_path / "link")) == {**FILE, "islnk": True}
    assert describe(str(tmp_path / "dangling")) == {**MISSING, "exists": True, "islnk": True}
    assert describe(str(tmp_path / "nowhere")) == MISSING
    assert describe(sys.executable)["executable"] is True


def test_bind_error_says_why_an_address_is_not_the_hosts() -> None:
    assert bind_error("127.0.0.1") == "" and bind_error("") == ""
    assert bind_error("192.0.2.1") != ""


def test_open_files_limit_reads_the_hard_limit(tmp_path: Path) -> None:
    limits = tmp_path / "limits"
    limits.write_text(
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max open files            1024                 524288               files     \n"
    )
    assert open_files_limit(str(limits)) == "524288"
    assert open_files_limit() not in ("", None)


def test_python_version_of_this_interpreter_and_of_nothing(tmp_path: Path) -> None:
    assert python_version(sys.executable) == "{}.{}".format(*sys.version_info[:2])
    assert python_version(str(tmp_path / "none")) is None


def test_site_packages_of_this_interpreter_and_of_nothing(tmp_path: Path) -> None:
    assert site_packages(sys.executable) == site.getsitepackages()[0]
    assert site_packages(str(tmp_path / "none")) == ""
    assert site_packages(None) == ""


@pytest.mark.parametrize(
    ("capacity", "limit", "refused"),
    [(20000, "32768", False), (24000, "32768", True), (24000, "4194304", False)],
)
def test_the_threads_the_load_needs_against_the_kernels_pid_limit(
    capacity: int, limit: str, refused: bool
) -> None:
    # These hosts' kernel.pid_max is 32768: 20,000 WebSockets (25,500 threads) fit, 24,000 not.
    looked = look(capacity_websockets=capacity)
    problems = judge(looked, task_limit=limit)["problems"]
    assert bool(problems) == refused, problems
    if refused:
        assert f"needs {looked['threads']} Apache worker threads" in problems[0]
        assert f"allows {limit} processes and threads" in problems[0]


def test_task_limit_reads_the_lower_kernel_limit(tmp_path: Path) -> None:
    (tmp_path / "pid_max").write_text("32768\n")
    (tmp_path / "threads-max").write_text("192735\n")
    assert task_limit(str(tmp_path)) == "32768"
    assert task_limit(str(tmp_path / "missing")) == "unlimited"
    assert int(task_limit()) > 0


def test_a_static_files_directory_must_be_on_the_host_except_in_check_mode() -> None:
    looked = look(static_files=[{"url": "/static/", "directory": "/srv/mysite/static"}])
    said = only_problem(judge(looked))
    assert said.startswith(
        "mod_wsgi_ws_sidecar_static_files[0].directory: /srv/mysite/static is not a directory"
        " on web1"
    )
    assert only_problem(judge(looked, paths={"/srv/mysite/static": FILE})) == said
    assert judge(looked, check_mode=True)["problems"] == []
    assert judge(looked, paths={"/srv/mysite/static": DIRECTORY})["problems"] == []
