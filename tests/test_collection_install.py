"""The collection installs as users install it, and its role finds its files.

Each route of the README's "Install" section (a built tarball, a git URL,
a requirements file) installs into a fresh project directory outside the
repository, with its own ansible.cfg and nothing pointing back. The role,
named by its fully qualified name, then runs its first check: the built-in
sidecars' package (files/mod_wsgi_ws_sidecar/) is there. A plain role
install of the repository is refused by that check with a message that
names the way out. Run with the ansible-core of the venv running the tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.kinds import (
    package_files,
)
from user_project import run_in_project

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import release

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"
ROLE = f"{FQCN}.mod_wsgi_ws_sidecar"
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_in_project(command, cwd, timeout=180)


def new_project(path: Path) -> Path:
    """A user's project: its own ansible.cfg and collections directory."""
    path.mkdir()
    (path / "ansible.cfg").write_text(
        "[defaults]\ncollections_path = ./collections\nroles_path = ./roles\n"
        "interpreter_python = auto_silent\n"
    )
    return path


def check_role(project: Path, role: str) -> subprocess.CompletedProcess[str]:
    """Runs the role's first check (its files are installed) on localhost."""
    play = [
        {
            "name": "Check the role finds its files",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Run the role's installation check",
                    "ansible.builtin.include_role": {"name": role, "tasks_from": "installed.yml"},
                }
            ],
        }
    ]
    (project / "check.yml").write_text(yaml.safe_dump(play))
    return run(str(BIN / "ansible-playbook"), "-c", "local", "check.yml", cwd=project)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    result = run(
        str(BIN / "ansible-galaxy"),
        "collection",
        "build",
        str(ROOT),
        "--output-path",
        str(out),
        cwd=out,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out / TARBALL


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository of the working tree, as a git URL would give it."""
    path = tmp_path_factory.mktemp("git") / "mod_wsgi_ws_sidecar"
    release.copy_tracked_files(ROOT, path)
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tree"],
    ):
        subprocess.run(command, cwd=path, capture_output=True, check=True)
    return path


def test_tarball_holds_the_collection_and_not_the_test_bed(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    for wanted in [
        "MANIFEST.json",
        "meta/runtime.yml",
        *(f"files/mod_wsgi_ws_sidecar/{name}" for name in package_files(set())),
        "roles/mod_wsgi_ws_sidecar/tasks/main.yml",
        "plugins/filter/plan.py",
        "plugins/module_utils/plan.py",
        "playbooks/site.yml",
        "README.md",
        "LICENSE",
    ]:
        assert wanted in names, wanted
    for unwanted in ["molecule", "tests", "bench", "scripts", ".venv", ".state", ".ci"]:
        assert not any(n == unwanted or n.startswith(unwanted + "/") for n in names), unwanted


def test_installed_from_the_tarball(tarball: Path, tmp_path: Path) -> None:
    project = new_project(tmp_path / "site")
    result = run(str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "collections/ansible_collections/mod_wsgi_ws_sidecar/apache").is_dir()
    result = check_role(project, ROLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_installed_from_a_git_url(clone: Path, tmp_path: Path) -> None:
    project = new_project(tmp_path / "site")
    result = run(
        str(BIN / "ansible-galaxy"), "collection", "install", f"git+file://{clone}", cwd=project
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = check_role(project, ROLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_installed_through_a_requirements_file(clone: Path, tmp_path: Path) -> None:
    project = new_project(tmp_path / "site")
    requirements = {"collections": [{"name": f"file://{clone}", "type": "git", "version": "HEAD"}]}
    (project / "requirements.yml").write_text(yaml.safe_dump(requirements))
    result = run(
        str(BIN / "ansible-galaxy"), "collection", "install", "-r", "requirements.yml", cwd=project
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = check_role(project, ROLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_plain_role_install_is_refused_with_the_way_out(clone: Path, tmp_path: Path) -> None:
    project = new_project(tmp_path / "site")
    result = run(
        str(BIN / "ansible-galaxy"),
        "role",
        "install",
        "-p",
        "roles",
        f"git+file://{clone}",
        cwd=project,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (role,) = [p.name for p in (project / "roles").iterdir()]
    result = check_role(project, role)
    assert result.returncode != 0
    assert "Install the collection, not the role alone" in result.stdout, result.stdout


def examples_requirements_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    (line,) = [
        ln
        for ln in readme.splitlines()
        if ln.startswith("ansible-galaxy collection install -r collections/")
    ]
    return line.split()


def test_every_collection_the_examples_use_is_declared_for_them() -> None:
    declared = {
        item["name"]
        for item in yaml.safe_load((ROOT / "playbooks/examples/requirements.yml").read_text())[
            "collections"
        ]
    }
    used = set()
    for playbook in (ROOT / "playbooks").rglob("*.yml"):
        for name in re.findall(
            r"^\s*-?\s*([a-z_]+\.[a-z_]+)\.[a-z_]+:", playbook.read_text(), re.M
        ):
            used.add(name)
    assert used - {"ansible.builtin", FQCN} == declared


def test_the_readmes_command_meets_the_examples_requirements(tarball: Path, tmp_path: Path) -> None:
    """Galaxy is out of reach here: community.general is put in the project
    as Galaxy would install it, from the pinned ansible package's copy; the
    README's command must then find every requirement met, at the path it
    names inside the installed collection."""
    project = new_project(tmp_path / "site")
    result = run(str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    pinned = next((ROOT / ".venv").glob("lib/python*/site-packages/ansible_collections"))
    shutil.copytree(
        pinned / "community/general", project / "collections/ansible_collections/community/general"
    )
    command = examples_requirements_command()
    result = run(str(BIN / "ansible-galaxy"), *command[1:], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All requested collections are already installed" in result.stdout, result.stdout
