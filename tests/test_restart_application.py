"""Finding the application's daemon processes by the name mod_wsgi gives
them (plugins/modules/restart_application.py), in a /proc made of files:
names cut or padded to Apache's argv[0], other users' and other groups'
processes left alone; and what the plan hands the handler in each mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.modules.restart_application import (
    indistinct,
    named,
    shown_as,
)
from hypothesis import given
from hypothesis import strategies as st
from test_plan import PUSH, PUSH_SECRETS, SIDECAR, plan

UID = os.getuid()
APACHE = "/usr/sbin/apache2"  # 17 characters of argv[0] to write a name over


def fake_proc(tmp_path: Path, processes: dict[int, str]) -> str:
    for pid, argv0 in processes.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(argv0.encode() + b"\0-k\0start\0")
    (tmp_path / "self").mkdir()
    return str(tmp_path)


def test_the_applications_processes_and_no_others(tmp_path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            10: APACHE,
            11: shown_as("(wsgi:wsgi-app)", len(APACHE)),
            12: shown_as("(wsgi:wsgi-app)", len(APACHE)),
            13: shown_as("(wsgi:metrics-sidecar)", len(APACHE)),
            14: shown_as("(wsgi:wsgi-app2)", len(APACHE)),
        },
    )
    assert named("(wsgi:wsgi-app)", UID, proc) == [11, 12]
    assert named("(wsgi:wsgi-app)", UID + 1, proc) == []


def test_a_name_longer_than_apaches_argv0_is_found_cut(tmp_path) -> None:
    proc = fake_proc(tmp_path, {20: shown_as("(wsgi:my-application)", len(APACHE))})
    assert named("(wsgi:my-application)", UID, proc) == [20]
    # ... and a sidecar whose name is cut the same cannot be told from it.
    others = ["(wsgi:my-applicationX)", "(wsgi:metrics)"]
    assert indistinct("(wsgi:my-application)", others, len(APACHE)) == others[:1]


@given(st.text(alphabet="(wsig:-apm)", min_size=1, max_size=30), st.integers(1, 40))
def test_a_shown_name_is_the_name_padded_or_cut_to_argv0(name: str, length: int) -> None:
    shown = shown_as(name, length)
    assert len(shown) == length
    assert shown.rstrip(" ") == name[:length].rstrip(" ")


@pytest.mark.parametrize(
    ("mode", "app", "sidecar"),
    [
        ("system", "(wsgi:wsgi-app)", "(wsgi:metrics-sidecar)"),
        ("express", "(wsgi:localhost:80:0)", "(wsgi:service:metrics-sidecar)"),
    ],
)
def test_the_plan_names_the_processes_as_mod_wsgi_does(mode: str, app: str, sidecar: str) -> None:
    restart = plan(mode=mode)["app_restart"]
    assert restart["display_name"] == app
    assert restart["others"] == [sidecar]
    # graceful-timeout, shutdown-timeout and startup-timeout, and a margin.
    assert restart["timeout"] == 15 + 5 + 15 + 30


def test_every_sidecar_is_named_for_the_restart_to_leave_alone() -> None:
    restart = plan(sidecars=[SIDECAR, PUSH], **PUSH_SECRETS)["app_restart"]
    assert restart["others"] == ["(wsgi:metrics-sidecar)", "(wsgi:push)"]
