"""Helpers shared by every scenario's testinfra tests.

All traffic stays inside the container under test: the probe script is
run there with `host.run`, against 127.0.0.1.
"""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

MOLECULE_DIR = Path(__file__).resolve().parent
# Where the scripts the tests run inside a container are staged: outside /tmp, over
# which Debian 13's systemd mounts a tmpfs at boot.
STAGE_DIR = "/opt/mws-test"
# probe.py as staged by staged_probe(), beside wsclient.py, the WebSocket client it imports.
STAGED_PROBE = f"{STAGE_DIR}/probe.py"
# (host, file name) already staged by this test session: the probe runs hundreds of times.
_staged: set[tuple[str, str]] = set()
# How Ansible names the role's tasks and handlers in its output.
ROLE = "mod_wsgi_ws_sidecar.apache.mod_wsgi_ws_sidecar"
# Where the role writes, and what Apache reads.
ROLE_TOUCHED_DIRS = (
    "/etc/apache2",
    "/etc/mod_wsgi_ws_sidecar",
    "/usr/local/lib/mod_wsgi_ws_sidecar",
    "/etc/systemd/system/apache2.service.d",
    "/etc/tmpfiles.d",
    "/run/mod_wsgi_ws_sidecar",
)
# The benchmark's load client, also the capacity tests' (staged in the container).
LOAD_CLIENT = Path(__file__).resolve().parent.parent / "bench" / "loadclient.py"
STAGED_LOAD_CLIENT = "/opt/mws-test/loadclient.py"


def stage_scripts(host, *names: str) -> None:
    """Copies these files of molecule/ into STAGE_DIR in the container, each once per
    host and session, readable by every user (Probe.as_user runs the probe as another)."""
    hostname = host.backend.get_hostname()
    missing = [name for name in names if (hostname, name) not in _staged]
    if not missing:
        return
    paths = [f"{STAGE_DIR}/{name}" for name in missing]
    for name, path in zip(missing, paths, strict=True):
        put_file(host, path, (MOLECULE_DIR / name).read_text())
    done = host.run("chmod 0755 %s && chmod 0644" + " %s" * len(paths), STAGE_DIR, *paths)
    assert done.rc == 0, done.stderr
    _staged.update((hostname, name) for name in missing)


def staged_probe(host) -> str:
    """The path of probe.py in the container, staged there with wsclient.py if need be."""
    stage_scripts(host, "probe.py", "wsclient.py")
    return STAGED_PROBE


class Probe:
    """Runs probe.py inside the container and decodes its JSON answer.

    Keyword options become probe.py flags: host_header="x" -> --host-header x,
    tls=True -> --tls.
    """

    def __init__(self, host, user: str | None = None):
        self.host = host
        self.user = user

    def as_user(self, user: str) -> "Probe":
        return Probe(self.host, user)

    def _call(self, *args: str):
        # testinfra quotes each argument for the remote shell.
        prefix = f"runuser -u {self.user} -- " if self.user else ""
        probe = staged_probe(self.host)
        return self.host.run(prefix + "python3 %s" + " %s" * len(args), probe, *args)

    def _run(self, *args: str) -> dict:
        result = self._call(*args)
        assert result.rc == 0, f"probe {args} failed: {result.stderr}"
        return json.loads(result.stdout)

    @staticmethod
    def _flags(options: dict) -> list[str]:
        flags = []
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                flags.append(flag)
            elif isinstance(value, list):
                for item in value:
                    flags += [flag, str(item)]
            elif value is not None and value is not False:
                flags += [flag, str(value)]
        return flags

    def http(self, path: str, **options) -> dict:
        return self._run("http", path, *self._flags(options))

    def ws(self, path: str, frames: int = 1, timeout: float = 5.0, **options) -> dict:
        flags = self._flags({"frames": frames, "timeout": timeout, **options})
        return self._run("ws", path, *flags)

    def stall(self, path: str, timeout: float, **options) -> dict:
        return self._run("stall", path, *self._flags({"timeout": timeout, **options}))

    def unix_connect(self, socket_path: str) -> dict:
        return self._run("unix-connect", socket_path)

    def ws_eventually(self, path: str, within: float, **options) -> dict:
        """The first WebSocket that answers with a frame before the deadline."""
        deadline = time.monotonic() + within
        while True:
            result = self._call("ws", path, *self._flags({"timeout": 3, **options}))
            if result.rc == 0:
                answer = json.loads(result.stdout)
                if answer["frames"]:
                    return answer
            if time.monotonic() > deadline:
                pytest.fail(f"no WebSocket frame from {path} within {within} s: {result.stderr}")
            time.sleep(0.5)


# Probe options for a stand-in remote client: another loopback address,
# which the role's default allow-list (127.0.0.1, ::1) does not admit.
REMOTE = {"source": "127.0.0.2"}


def status(answer: dict) -> int:
    """The status code of a probe answer, HTTP or WebSocket handshake."""
    if "status" in answer:
        return answer["status"]
    return int(answer["handshake"].split()[1])


@pytest.fixture()
def probe(host) -> Probe:
    return Probe(host)


def browse(host, steps: list[dict], limit: int = 150) -> dict:
    """Runs the steps in one Chromium tab inside the container; the whole run,
    Chromium's start and end included, is bounded by `limit` seconds."""
    stage_scripts(host, "browser.py", "wsclient.py")
    browser = f"{STAGE_DIR}/browser.py"
    result = host.run("timeout -k 10 %s python3 %s %s", str(limit), browser, json.dumps(steps))
    assert result.rc == 0, f"browser.py: rc {result.rc}\n{result.stdout[-4000:]}\n{result.stderr}"
    report = json.loads(result.stdout)
    assert report["exceptions"] == [], report["exceptions"]  # the page's own script never throws
    return report


def put_file(host, path: str, text: str) -> None:
    """Writes `text` to `path` in the container, creating its directory."""
    written = host.run(
        'mkdir -p "$(dirname %s)" && python3 -c %s %s %s',
        path,
        "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
        path,
        text,
    )
    assert written.rc == 0, written.stderr


def load(host, url: str, clients: int, excess: int) -> dict:
    """Holds `clients` WebSockets at `url` inside the container, then tries
    `excess` more while sampling the WSGI app at / (bench/loadclient.py)."""
    put_file(host, STAGED_LOAD_CLIENT, LOAD_CLIENT.read_text())
    result = host.run(
        "timeout 120 python3 %s --url %s --clients %s --excess %s"
        " --http-url http://127.0.0.1/ --hold 3",
        STAGED_LOAD_CLIENT,
        url,
        str(clients),
        str(excess),
    )
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def enabled_apache_config(host) -> str:
    """The text of every file the running Apache configuration includes."""
    includes = host.check_output("apache2ctl -t -D DUMP_INCLUDES")
    paths = [line.split(")", 1)[1].strip() for line in includes.splitlines() if ")" in line]
    return "\n".join(host.file(path).content_string for path in paths)


def proxy_passes(host) -> dict[str, list[str]]:
    """Each ProxyPass of the running configuration: its path -> its words."""
    lines = enabled_apache_config(host).splitlines()
    words = [line.split() for line in lines if line.strip().startswith("ProxyPass ")]
    return {line[1]: line for line in words}


def wsgi_daemon_groups(config_text: str) -> dict[str, str]:
    """WSGIDaemonProcess name -> its options, continuation lines joined."""
    joined = config_text.replace("\\\n", " ")
    groups = {}
    for line in joined.splitlines():
        words = line.split()
        if words[:1] == ["WSGIDaemonProcess"]:
            groups[words[1]] = " ".join(words[2:])
    return groups


# The harness reads Ansible's JSON output (ansible.posix.json), not the
# human one: task names, changes, failures and the recap come as data.
JSON_CALLBACK = "ansible.posix.json"


@dataclass
class PlaybookRun:
    """One ansible-playbook run: its exit code, raw output and parsed result."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @cached_property
    def result(self) -> dict:
        # -vvv prints connection lines before the callback's one JSON document.
        start = self.stdout.rfind('{\n    "custom_stats"')
        assert start >= 0, f"no JSON result in: {self.output[-3000:]}"
        return json.loads(self.stdout[start:])

    def results(self) -> Iterator[tuple[str, str, dict]]:
        """(host, task or handler name, result) in the order they ran."""
        for play in self.result["plays"]:
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    yield host, task["task"]["name"], result

    def changed(self) -> dict[str, list[str]]:
        """For each host, the tasks and handlers that reported a change."""
        changed: dict[str, list[str]] = {host: [] for host in self.result["stats"]}
        for host, name, result in self.results():
            if result.get("changed") and name not in changed[host]:
                changed[host].append(name)
        return changed

    def changed_paths(self) -> dict[str, list[str]]:
        """For each host, the paths its file tasks (write_files entries, or
        copy, template and file results) changed, in order."""
        paths: dict[str, list[str]] = {host: [] for host in self.result["stats"]}
        for host, _, result in self.results():
            for item in result.get("results", [result]):
                path = (item.get("dest") or item.get("path")) if isinstance(item, dict) else None
                if path and item.get("changed"):
                    paths[host].append(path)
        return paths

    def recap(self, counter: str = "changed") -> dict[str, int]:
        """One counter of the play recap (ok, changed, failures...) per host."""
        return {host: stats[counter] for host, stats in self.result["stats"].items()}

    def messages(self) -> str:
        """What every failed task (or loop item) said: its msg, each problem of
        a list on its own line, and its stderr."""
        said: list[str] = []

        def collect(result: dict) -> None:
            msg = result.get("msg", "")
            said.extend(msg if isinstance(msg, list) else [str(msg)])
            said.append(result.get("stderr", ""))
            # A failed loop's items do not all say "failed" (an assert's say
            # "evaluated_to"): every item's words count.
            for item in result.get("results", []):
                collect(item)

        for _, _, result in self.results():
            if result.get("failed"):
                collect(result)
        return "\n".join(said)


def run_playbook(
    extra_vars: dict | None = None,
    check: bool = False,
    verbose: bool = False,
    limit: str | None = None,
    playbook: str | None = None,
    collections: str | None = None,
    ansible_bin: str | None = None,
) -> PlaybookRun:
    """Runs the scenario's converge playbook (or `playbook`, a file of the
    scenario's, or an absolute path) again on all its hosts (or those `limit`
    names), as Molecule does. extra_vars override the playbook's own (a user
    changing a variable); verbose adds -vvv; `collections` is where Ansible
    finds the collection instead of the working tree (an installed copy),
    `ansible_bin` the directory of another ansible-core's ansible-playbook."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    playbook = scenario / (playbook or config["provisioner"]["playbooks"]["converge"])
    command = [
        f"{ansible_bin}/ansible-playbook" if ansible_bin else "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(playbook),
    ]
    if check:
        command += ["--check", "--diff"]
    if extra_vars:
        command += ["--extra-vars", json.dumps(extra_vars)]
    if verbose:
        command.append("-vvv")
    if limit:
        command += ["--limit", limit]
    done = subprocess.run(
        command,
        env={
            **os.environ,
            **({"ANSIBLE_COLLECTIONS_PATH": collections} if collections else {}),
            "ANSIBLE_STDOUT_CALLBACK": JSON_CALLBACK,
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return PlaybookRun(done.returncode, done.stdout, done.stderr)


def converge(extra_vars: dict | None = None, check: bool = False) -> dict[str, list[str]]:
    """run_playbook that must succeed; returns what changed on each host."""
    return converge_run(extra_vars, check).changed()


def converge_run(extra_vars: dict | None = None, check: bool = False) -> PlaybookRun:
    """run_playbook that must succeed."""
    run = run_playbook(extra_vars, check)
    assert run.returncode == 0, run.output[-6000:]
    return run


def scenario_hosts() -> list:
    """A testinfra host for every host of the scenario's inventory."""
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    return [scenario_host(name) for name in runner.get_hosts("all")]


def role_files_state(host) -> str:
    """Every file and link the role manages or Apache reads, with checksums,
    owners and modes, and Apache's main PID: equal before and after means the
    host was not touched."""
    dirs = " ".join(ROLE_TOUCHED_DIRS)
    # find complains about the directories a host lacks; what it lists is what counts.
    listing = host.run(
        f"find {dirs} -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %y %u:%g %m %l\\n'"
        " 2>/dev/null | sort"
    ).stdout
    sums = host.run(f"find {dirs} -type f -print0 2>/dev/null | sort -z | xargs -0 md5sum").stdout
    pid = host.check_output("systemctl show -p MainPID --value apache2")
    return f"{listing}\n{sums}\nMainPID={pid}"


def scenario_host(name: str):
    """A testinfra host for an inventory name, for fixtures that look at every
    host at one moment (pytest groups tests by host, not by moment)."""
    return testinfra.get_host(
        f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


@pytest.fixture(scope="session")
def check_mode_changes() -> dict[str, list[str]]:
    """The converge playbook run again with --check --diff (once for all
    hosts): what each host would change."""
    return converge(check=True)
