"""Each sidecar's settings file (NAME.json) keeps JSON's own types, and
is what that sidecar's own parser accepts, with the values the role meant.

ansible-core 2.18 turned numbers templated on their own into strings, and
the sidecar crash-looped on "poll_interval": "1.0". The role's own tasks
(the plan, then the settings file) are run by the ansible-playbook of the
venv running these tests: the pinned release in .venv, the oldest claimed
one in .state/venv-oldest (scripts/test.sh runs both).
"""

from __future__ import annotations

import grp
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mod_wsgi_ws_sidecar import dashboard, push_sidecar

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles/mod_wsgi_ws_sidecar"
DEFAULTS = yaml.safe_load((ROLE / "defaults/main.yml").read_text())

# The built-in dashboard as the role's defaults give it, the same on a unix
# socket with whole numbers where floats are expected, and a user's script.
SIDECARS: list[dict[str, Any]] = [
    *DEFAULTS["mod_wsgi_ws_sidecar_sidecars"],
    {
        "name": "unix-dash",
        "mount": "/unix/",
        "listener": "unix",
        "poll_interval": 2,
        "heartbeat": 15,
        "send_timeout": 1,
        "max_clients": 40,
    },
    # Several processes, with their shared count of clients.
    {"name": "wide", "mount": "/wide/", "port": 8771, "processes": 2},
    {
        "name": "echo",
        "mount": "/echo/",
        "port": 8770,
        "script": "/srv/echo.py",
        "origins": ["https://example.com"],
    },
    # The push channel, one setting of its own changed.
    {"name": "push", "kind": "push", "mount": "/push/", "port": 8772, "max_replay": 50},
]
# The secrets a push sidecar's NAME.json also holds (the inventory's).
REDIS_PASSWORD = "redis-password-".ljust(32, "r")
TOKEN_SECRET = "token-secret-".ljust(40, "t")

# What the role's secrets task would have chosen (plugins/filter/sidecar_secrets.py).
SECRETS = {s["name"]: f"{s['name'][:4]}-secret-".ljust(43, "x") for s in SIDECARS}

BUILTIN_TYPES = {
    "name": str,
    "listen": dict,
    "max_clients": int,
    "origins": list,
    "secret": str,
    "poll_interval": float,
    "heartbeat": float,
    "send_timeout": float,
    "max_send_buffer": int,
    "sidecars": list,
    "show_query_strings": bool,
    "metrics_dir": str,
}
PUSH_TYPES = {
    "name": str,
    "kind": str,
    "listen": dict,
    "max_clients": int,
    "origins": list,
    "secret": str,
    "heartbeat": float,
    "send_timeout": float,
    "max_send_buffer": int,
    "public_channels": list,
    "history": int,
    "max_channels": int,
    "max_replay": int,
    "channel_ttl": int,
    "redis": dict,
    "token_secret": str,
    "metrics_dir": str,
}
USER_TYPES = {
    "name": str,
    "listen": dict,
    "max_clients": int,
    "origins": list,
    "secret": str,
    "prefix": str,
}


def check_types(settings: dict[str, Any]) -> None:
    expected = (
        USER_TYPES
        if "prefix" in settings
        else PUSH_TYPES
        if settings.get("kind") == "push"
        else BUILTIN_TYPES
    )
    if "processes" in settings:
        expected = {**expected, "processes": int, "clients_file": str}
    assert {key: type(value) for key, value in settings.items()} == expected, settings
    listen = settings["listen"]
    if "path" in listen:
        assert isinstance(listen["path"], str)
    else:
        assert isinstance(listen["host"], str) and isinstance(listen["port"], int)


def settings_task() -> dict[str, Any]:
    """The role's own task that writes NAME.json (with the secrets), without
    its handler and no_log, so that a failure shows."""
    tasks = yaml.safe_load((ROLE / "tasks/secrets.yml").read_text())
    (task,) = [t for t in tasks if "mod_wsgi_ws_sidecar.apache.write_files" in t]
    return {key: value for key, value in task.items() if key not in ("notify", "no_log")}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Runs the role's plan and settings tasks on this venv's ansible-core,
    writing into a temp dir (as root, who owns the files)."""
    work = tmp_path_factory.mktemp("render")
    link = work / "collections/ansible_collections/mod_wsgi_ws_sidecar/apache"
    link.parent.mkdir(parents=True)
    link.symlink_to(ROOT)
    # The role's templates, where a play outside the role looks for them.
    (work / "templates").symlink_to(ROLE / "templates")
    # Counting the processors, and the plan.
    plan_tasks = yaml.safe_load((ROLE / "tasks/plan.yml").read_text())[:2]
    play = [
        {
            "name": "Render the sidecars' settings as the role does",
            "hosts": "localhost",
            "gather_facts": False,
            "vars_files": [
                str(ROLE / "defaults/main.yml"),
                str(ROLE / "vars/main.yml"),
                str(ROLE / "vars/Debian.yml"),
            ],
            "tasks": [*plan_tasks, settings_task()],
        }
    ]
    (work / "play.yml").write_text(yaml.safe_dump(play))
    (work / "vars.json").write_text(
        json.dumps(
            {
                "mod_wsgi_ws_sidecar_sidecars": SIDECARS,
                "mod_wsgi_ws_sidecar_group": grp.getgrgid(os.getgid()).gr_name,
                "__mod_wsgi_ws_sidecar_secrets": SECRETS,
                "mod_wsgi_ws_sidecar_redis_password": REDIS_PASSWORD,
                "mod_wsgi_ws_sidecar_push_token_secret": TOKEN_SECRET,
                "__mod_wsgi_ws_sidecar_conf_dir": str(work / "conf"),
                "__mod_wsgi_ws_sidecar_secrets_conf": str(work / "conf/apache-secrets.conf"),
                "role_path": str(ROLE),
            }
        )
    )
    (work / "ansible.cfg").write_text("[defaults]\ninterpreter_python = auto_silent\n")
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
        "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    playbook = Path(sys.executable).parent / "ansible-playbook"
    result = subprocess.run(
        [str(playbook), "-c", "local", "-e", f"@{work / 'vars.json'}", str(work / "play.yml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    conf = work / "conf"
    return {s["name"]: json.loads((conf / f"{s['name']}.json").read_text()) for s in SIDECARS}


def test_the_roles_task_writes_json_types_on_this_ansible_core(rendered) -> None:
    assert set(rendered) == {"metrics-sidecar", "unix-dash", "wide", "echo", "push"}
    for settings in rendered.values():
        check_types(settings)
    assert rendered["metrics-sidecar"]["poll_interval"] == 1.0
    assert rendered["metrics-sidecar"]["max_clients"] == 500
    assert rendered["unix-dash"]["heartbeat"] == 15.0


def test_the_files_hold_the_plans_settings_and_the_secret(rendered) -> None:
    assert rendered["unix-dash"]["listen"] == {
        "path": "/run/mod_wsgi_ws_sidecar/unix-dash/sidecar.sock"
    }
    assert rendered["unix-dash"]["max_clients"] == 40
    assert rendered["echo"]["prefix"] == "/echo"
    assert rendered["echo"]["origins"] == ["https://example.com"]
    assert {name: s["secret"] for name, s in rendered.items()} == SECRETS


def test_each_built_in_sidecar_parses_what_the_role_wrote_for_it(rendered) -> None:
    """The contract between the plan and the sidecars: every file the role
    writes for a built-in kind is accepted by that kind's own parser, and
    what the sidecar then runs with is what the role's variables said,
    defaults included (one source: the package's defaults.json)."""
    defaults = json.loads((ROOT / "files/mod_wsgi_ws_sidecar/defaults.json").read_text())
    parsed = {
        name: dashboard.parse_config(settings)
        for name, settings in rendered.items()
        if name in ("metrics-sidecar", "unix-dash", "wide")
    }
    for config in parsed.values():
        assert config.secret == SECRETS[config.name]
        assert config.send_timeout == defaults["send_timeout"]
        assert config.max_send_buffer == defaults["max_send_buffer"]
        assert config.show_query_strings is defaults["show_query_strings"]
    assert parsed["metrics-sidecar"].poll_interval == defaults["poll_interval"]
    assert (
        parsed["metrics-sidecar"].max_clients == DEFAULTS["mod_wsgi_ws_sidecar_capacity_websockets"]
    )
    assert [r.name for r in parsed["metrics-sidecar"].routes] == [s["name"] for s in SIDECARS]
    unix = parsed["unix-dash"]
    assert (unix.path, unix.poll_interval, unix.heartbeat, unix.max_clients) == (
        "/run/mod_wsgi_ws_sidecar/unix-dash/sidecar.sock",
        2.0,
        15.0,
        40,
    )
    assert (parsed["wide"].processes, parsed["wide"].clients_file) == (
        2,
        "/run/mod_wsgi_ws_sidecar_metrics/wide.clients",
    )

    push = push_sidecar.parse_config(rendered["push"])
    assert (push.name, push.port, push.secret) == ("push", 8772, SECRETS["push"])
    assert (push.redis_password, push.token_secret) == (REDIS_PASSWORD, TOKEN_SECRET)
    assert push.max_replay == 50
    for key in ("heartbeat", "send_timeout", "max_send_buffer", "history", "max_channels"):
        assert getattr(push, key) == defaults[key], key
    assert push.channel_ttl == defaults["channel_ttl"]
