"""files/mod_wsgi_ws_sidecar/runner.py: a user's service script that fails ends its
process (for mod_wsgi to start another), logged once; one that returns is
left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from mod_wsgi_ws_sidecar import runner as sidecar_runner


@pytest.fixture(autouse=True)
def no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sidecar_runner, "RESTART_DELAY", 0)


def run(tmp_path: Path, body: str) -> list[int]:
    script = tmp_path / "user_sidecar.py"
    script.write_text(body)
    exits: list[int] = []
    sidecar_runner.run(str(script), "echo", exit_process=exits.append)
    return exits


def test_a_script_that_raises_ends_the_process_logged_once(tmp_path, capsys) -> None:
    body = "def start():\n    raise RuntimeError('bind failed')\n\nstart()\n"
    assert run(tmp_path, body) == [1]
    err = capsys.readouterr().err
    assert err.count("RuntimeError: bind failed") == 1
    assert "sidecar echo:" in err and "user_sidecar.py" in err


def test_the_first_error_stays_visible_behind_a_second(tmp_path, capsys) -> None:
    # uvicorn, failing at start under mod_wsgi, fails again restoring signals.
    body = (
        "try:\n    raise OSError('address already in use')\n"
        "finally:\n    raise TypeError('signal handler must be callable')\n"
    )
    assert run(tmp_path, body) == [1]
    err = capsys.readouterr().err
    assert "address already in use" in err and "signal handler must be callable" in err


def test_sys_exit_with_a_failure_code_ends_the_process_too(tmp_path, capsys) -> None:
    # uvicorn exits with status 1 when it cannot start.
    assert run(tmp_path, "import sys\nsys.exit(3)\n") == [1]
    assert "sidecar echo:" in capsys.readouterr().err


def test_mod_wsgis_stop_is_an_orderly_end_not_a_failure(tmp_path, capsys) -> None:
    # mod_wsgi stops a service script with a bare SystemExit.
    assert run(tmp_path, "raise SystemExit\n") == [0]
    assert capsys.readouterr().err == ""


def test_a_script_that_returns_is_left_alone(tmp_path) -> None:
    assert run(tmp_path, "import threading\nSTARTED = True\n") == []


def test_runs_under_its_own_module_name_not_main(tmp_path) -> None:
    body = "if __name__ == '__main__':\n    raise SystemExit('standalone only')\n"
    assert run(tmp_path, body) == []
    assert sidecar_runner.module_name("echo-2") == "_mod_wsgi_ws_sidecar_echo_2"
