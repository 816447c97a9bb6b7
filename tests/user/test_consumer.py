"""The collection as a user consumes it, on the oldest ansible-core it claims.

Builds the collection's tarball, installs it into a fresh project directory
outside the repository with the README's own ansible.cfg and site.yml (the
blocks of its "Install" section), converges fresh Debian 12 and 13
containers with ansible-core from .state/venv-oldest, then checks, inside
each container on its loopback: the WSGI app answers, a WebSocket through
Apache streams scoreboard snapshots, and the sidecar's settings keep JSON's
types. `--check --diff` must then report no change with the oldest and the
pinned release alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from user_project import run_in_project

ROOT = Path(__file__).resolve().parents[2]
PINNED = Path(sys.executable).parent
OLDEST = ROOT / ".state/venv-oldest/bin"
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
PREFIX = os.environ.get("MWS_CONTAINER_PREFIX", "mws")
CONTAINERS = {
    f"{PREFIX}-consumer-debian12": "mod-wsgi-ws-sidecar/debian:bookworm",
    f"{PREFIX}-consumer-debian13": "mod-wsgi-ws-sidecar/debian:trixie",
}
# Staged outside /tmp: Debian 13 mounts a tmpfs over it at boot.
PROBE = "/usr/local/share/mws-probe.py"
# The probe imports its WebSocket client from its own directory.
WSCLIENT = "/usr/local/share/wsclient.py"


def readme_files() -> dict[str, str]:
    """The README's Install section: code blocks whose first line names a file."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```[a-z]*\n(.*?)```", section, re.S):
        first = block.splitlines()[0]
        if re.fullmatch(r"# [\w.-]+\.(cfg|yml)", first):
            files[first[2:]] = block
    return files


def readme_install_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    (line,) = [
        ln
        for ln in readme.splitlines()
        if ln.startswith(f"ansible-galaxy collection install {TARBALL}")
    ]
    return line.split()


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs in the project with its own ansible.cfg and none of ours."""
    return run_in_project(command, cwd)


def playbook(bin_dir: Path, project: Path, *extra: str) -> dict[str, dict[str, int]]:
    """ansible-playbook site.yml; returns the play recap's counts per host."""
    result = run(
        [str(bin_dir / "ansible-playbook"), "-i", "inventory.yml", "site.yml", *extra], project
    )
    (project / f"last-{bin_dir.parent.name}.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {
        host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
        for host, counts in re.findall(r"^(\S+)\s+: (ok=.*)$", result.stdout, re.M)
    }


def in_container(name: str, *command: str) -> str:
    result = subprocess.run(
        ["docker", "exec", name, *command], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A user's project outside the repository, and fresh containers for it."""
    assert (OLDEST / "ansible-playbook").exists(), "run scripts/test.sh, which creates the venv"
    project = tmp_path_factory.mktemp("consumer") / "site"
    project.mkdir()
    built = run([str(PINNED / "ansible-galaxy"), "collection", "build", str(ROOT)], project)
    assert built.returncode == 0, built.stdout + built.stderr
    for name, text in readme_files().items():
        (project / name).write_text(text)
    installed = run([str(PINNED / "ansible-galaxy"), *readme_install_command()[1:]], project)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The containers are reached with community.docker's connection, which a
    # user would install from Galaxy (unreachable here): take the pinned
    # ansible package's copy.
    docker_collection = next(PINNED.parent.glob("lib/python*/site-packages/ansible_collections"))
    shutil.copytree(
        docker_collection / "community/docker",
        project / "collections/ansible_collections/community/docker",
    )
    hosts = {name: {"ansible_connection": "community.docker.docker"} for name in CONTAINERS}
    (project / "inventory.yml").write_text(yaml.safe_dump({"webservers": {"hosts": hosts}}))
    try:
        for name, image in CONTAINERS.items():
            start = f'. "{ROOT}/scripts/lib/common.sh"; start_systemd_container "$0" "$1"'
            subprocess.run(["bash", "-c", start, name, image], check=True, timeout=120)
            for source, staged in (
                ("molecule/probe.py", PROBE),
                ("molecule/wsclient.py", WSCLIENT),
            ):
                subprocess.run(
                    ["docker", "cp", str(ROOT / source), f"{name}:{staged}"],
                    check=True,
                    timeout=60,
                )
        yield project
    finally:
        for name in CONTAINERS:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def first_check(workspace: Path) -> subprocess.CompletedProcess[str]:
    """--check --diff on the brand-new hosts, before anything was installed."""
    return run(
        [str(OLDEST / "ansible-playbook"), "-i", "inventory.yml", "site.yml", "--check", "--diff"],
        workspace,
    )


@pytest.fixture(scope="module")
def project(workspace: Path, first_check: subprocess.CompletedProcess[str]) -> Path:
    """The user's project after a converge with the oldest core."""
    stats = playbook(OLDEST, workspace)
    assert set(stats) == set(CONTAINERS), stats
    assert all(s["failed"] == 0 and s["unreachable"] == 0 for s in stats.values()), stats
    return workspace


def test_check_mode_on_a_brand_new_host_stops_at_once_saying_why(
    first_check: subprocess.CompletedProcess[str],
) -> None:
    output = first_check.stdout
    assert first_check.returncode != 0
    for name in CONTAINERS:
        assert f"Check mode cannot predict a first install on {name}" in output, output[-3000:]
    # The role's very first host task, and the only failure: no apt, no
    # configuration test, no rescue claiming Apache rejected anything.
    failed = re.findall(r"^fatal: \[([^\]]+)\]", output, re.M)
    assert sorted(failed) == sorted(CONTAINERS), output[-3000:]
    assert "Stop check mode on a host the role has not set up yet" in output
    assert "Install Apache" not in output and "rejected" not in output
    for name in CONTAINERS:
        assert in_container(name, "sh", "-c", "command -v apache2ctl || echo absent").strip() == (
            "absent"
        )


def test_project_holds_nothing_of_the_repository(project: Path) -> None:
    assert not project.resolve().is_relative_to(ROOT)
    config = (project / "ansible.cfg").read_text()
    assert str(ROOT) not in config and "collections_path = ./collections" in config
    installed = project / "collections/ansible_collections/mod_wsgi_ws_sidecar/apache"
    assert not installed.is_symlink()
    assert (installed / "files/mod_wsgi_ws_sidecar/core.py").is_file()
    assert "mod_wsgi_ws_sidecar.apache.mod_wsgi_ws_sidecar" in (project / "site.yml").read_text()


@pytest.mark.parametrize("name", CONTAINERS)
def test_websocket_through_apache_streams_the_scoreboard(project: Path, name: str) -> None:
    app = json.loads(in_container(name, "python3", PROBE, "http", "/"))
    assert app["status"] == 200, app
    feed = json.loads(in_container(name, "python3", PROBE, "ws", "/metrics/ws", "--frames", "2"))
    assert " 101 " in feed["handshake"] + " ", feed
    frames = [frame["data"] for frame in feed["frames"]]
    assert [frame["type"] for frame in frames] == ["snapshot", "snapshot"], frames
    assert frames[1]["seq"] > frames[0]["seq"]


@pytest.mark.parametrize("name", CONTAINERS)
def test_prometheus_endpoint_answers_where_the_readmes_scrape_config_looks(
    project: Path, name: str
) -> None:
    answer = json.loads(in_container(name, "python3", PROBE, "http", "/metrics/metrics"))
    assert answer["status"] == 200, answer
    lines = answer["body"].splitlines()
    assert "apache_up 1.0" in lines, lines
    assert 'mod_wsgi_ws_sidecar_websockets_max{sidecar="metrics-sidecar"} 500.0' in lines, lines


@pytest.mark.parametrize("name", CONTAINERS)
def test_sidecar_settings_keep_their_types(project: Path, name: str) -> None:
    settings = json.loads(
        in_container(name, "cat", "/etc/mod_wsgi_ws_sidecar/metrics-sidecar.json")
    )
    for key in ("poll_interval", "heartbeat", "send_timeout"):
        assert type(settings[key]) is float, (key, settings[key])
    for key in ("max_clients", "max_send_buffer"):
        assert type(settings[key]) is int, (key, settings[key])
    assert type(settings["listen"]["port"]) is int


@pytest.mark.parametrize("bin_dir", [OLDEST, PINNED], ids=["oldest", "pinned"])
def test_check_mode_reports_no_change(project: Path, bin_dir: Path) -> None:
    stats = playbook(bin_dir, project, "--check", "--diff")
    assert set(stats) == set(CONTAINERS)
    assert {host: s["changed"] for host, s in stats.items()} == dict.fromkeys(CONTAINERS, 0)


# Another Apache role in the same play, with handlers of the common names.
OTHER_ROLE_HANDLERS = [
    {"name": name, "ansible.builtin.debug": {"msg": f"the other role's {name}"}}
    for name in ("Check the Apache configuration", "Reload Apache", "Restart Apache")
]


def test_other_roles_handlers_cannot_shadow_the_roles_own(project: Path) -> None:
    # Runs last: it changes the site, then puts the README's site.yml back.
    handlers = project / "roles/other_apache/handlers"
    handlers.mkdir(parents=True)
    (handlers / "main.yml").write_text(yaml.safe_dump(OTHER_ROLE_HANDLERS))
    play = yaml.safe_load((project / "site.yml").read_text())
    play[0]["roles"] = [
        {
            **play[0]["roles"][0],
            "vars": {
                "mod_wsgi_ws_sidecar_extra_directives": ["Header always set X-Consumer-Test loaded"]
            },
        },
        {"role": "other_apache"},
    ]
    (project / "shadowed.yml").write_text(yaml.safe_dump(play))
    result = run([str(PINNED / "ansible-playbook"), "-i", "inventory.yml", "shadowed.yml"], project)
    assert result.returncode == 0, result.stdout[-3000:]
    try:
        for name in CONTAINERS:
            answer = json.loads(in_container(name, "python3", PROBE, "http", "/"))
            assert answer["headers"].get("X-Consumer-Test") == "loaded", (name, answer["headers"])
    finally:
        playbook(PINNED, project)
