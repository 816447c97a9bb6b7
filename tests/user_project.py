"""Running Ansible as a user does in a project of their own: with that
project's ansible.cfg and none of this repository's ANSIBLE_* settings.
Shared by the collection install tests and the consumer test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


def run_in_project(
    command: Sequence[str], project: Path, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(project / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        list(command),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
