"""Helpers shared by every scenario's testinfra tests.

All traffic stays inside the container under test: the probe script is
run there with `host.run`, against 127.0.0.1.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

PROBE = (Path(__file__).parent / "probe.py").read_text()


class Probe:
    """Runs probe.py inside the container and decodes its JSON answer."""

    def __init__(self, host):
        self.host = host

    def _call(self, *args: str):
        # testinfra quotes each argument for the remote shell.
        return self.host.run("python3 -c %s" + " %s" * len(args), PROBE, *args)

    def _run(self, *args: str) -> dict:
        result = self._call(*args)
        assert result.rc == 0, f"probe {args} failed: {result.stderr}"
        return json.loads(result.stdout)

    def http(self, path: str, port: int = 80, host_header: str | None = None) -> dict:
        extra = ["--host-header", host_header] if host_header else []
        return self._run("http", path, "--port", str(port), *extra)

    def ws(self, path: str, frames: int = 1, timeout: float = 5.0, port: int = 80) -> dict:
        return self._run(
            "ws", path, "--frames", str(frames), "--timeout", str(timeout), "--port", str(port)
        )

    def ws_eventually(self, path: str, within: float) -> dict:
        """The first WebSocket that answers with a frame before the deadline."""
        deadline = time.monotonic() + within
        while True:
            result = self._call("ws", path, "--timeout", "3")
            if result.rc == 0:
                answer = json.loads(result.stdout)
                if answer["frames"]:
                    return answer
            if time.monotonic() > deadline:
                pytest.fail(f"no WebSocket frame from {path} within {within} s: {result.stderr}")
            time.sleep(0.5)


@pytest.fixture()
def probe(host) -> Probe:
    return Probe(host)


def enabled_apache_config(host) -> str:
    """The text of every file the running Apache configuration includes."""
    includes = host.check_output("apache2ctl -t -D DUMP_INCLUDES")
    paths = [line.split(")", 1)[1].strip() for line in includes.splitlines() if ")" in line]
    return "\n".join(host.file(path).content_string for path in paths)


def wsgi_daemon_groups(config_text: str) -> dict[str, str]:
    """WSGIDaemonProcess name -> its options, continuation lines joined."""
    joined = config_text.replace("\\\n", " ")
    groups = {}
    for line in joined.splitlines():
        words = line.split()
        if words[:1] == ["WSGIDaemonProcess"]:
            groups[words[1]] = " ".join(words[2:])
    return groups


@pytest.fixture(scope="session")
def check_mode_changes() -> dict[str, int]:
    """Runs the scenario's converge playbook again with --check --diff (once for
    all hosts) and returns each host's `changed` count from the play recap."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    playbook = scenario / config["provisioner"]["playbooks"]["converge"]
    run = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--check",
            "--diff",
            str(playbook),
        ],
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    recap = run.stdout[run.stdout.rindex("PLAY RECAP") :]
    return {
        match.group(1): int(match.group(2))
        for match in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", recap, re.MULTILINE)
    }
