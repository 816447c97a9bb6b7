"""Each sidecar's secret is kept from run to run, and replaced when missing,
malformed, or when rotation is asked for (plugins/filter/sidecar_secrets.py)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins/filter"))

import sidecar_secrets  # noqa: E402

KEPT = "A" * 20 + "b-_9" + "z" * 19


def slurped(name: str, content: bytes | None) -> dict[str, Any]:
    """One item of the role's slurp loop: read, or failed (absent file)."""
    result: dict[str, Any] = {
        "ansible_loop_var": "__mod_wsgi_ws_sidecar_name",
        "__mod_wsgi_ws_sidecar_name": name,
    }
    if content is None:
        result.update(failed=True, msg="file not found")
    else:
        result["content"] = base64.b64encode(content).decode()
    return result


def test_new_secrets_are_well_formed_and_distinct() -> None:
    made = {sidecar_secrets.new_secret() for _ in range(50)}
    assert len(made) == 50
    assert all(sidecar_secrets.SECRET_PATTERN.fullmatch(secret) for secret in made)


def test_a_stored_secret_is_kept() -> None:
    chosen = sidecar_secrets.sidecar_secrets([slurped("metrics", KEPT.encode() + b"\n")])
    assert chosen == {"metrics": KEPT}


@pytest.mark.parametrize(
    "content",
    [
        None,  # absent: first run
        b"",
        KEPT[:-1].encode(),
        (KEPT + "x").encode(),
        KEPT.replace("b", "%").encode(),  # Apache would read %b as a format
        KEPT.replace("b", " ").encode(),
        b"\xff" * 43,
    ],
    ids=["absent", "empty", "short", "long", "percent", "space", "binary"],
)
def test_a_missing_or_malformed_secret_is_replaced(content: bytes | None) -> None:
    chosen = sidecar_secrets.sidecar_secrets([slurped("metrics", content)])
    assert chosen["metrics"] != KEPT
    assert sidecar_secrets.SECRET_PATTERN.fullmatch(chosen["metrics"])


def test_rotation_replaces_every_secret() -> None:
    found = [slurped("metrics", KEPT.encode()), slurped("echo", KEPT.encode())]
    chosen = sidecar_secrets.sidecar_secrets(found, rotate=True)
    assert set(chosen) == {"metrics", "echo"}
    assert KEPT not in chosen.values()
    assert chosen["metrics"] != chosen["echo"]


def test_garbage_content_is_replaced_not_raised() -> None:
    result = slurped("metrics", None)
    result["content"] = "not base64!"
    assert sidecar_secrets.SECRET_PATTERN.fullmatch(
        sidecar_secrets.sidecar_secrets([result])["metrics"]
    )


def test_a_push_sidecars_settings_get_the_shared_secrets_too() -> None:
    entries = [
        {"dest": "/etc/m/push.secret", "mode": "0600", "secret_of": "push"},
        {
            "dest": "/etc/m/push.json",
            "json": {"name": "push", "redis": {"url": "redis://127.0.0.1:6379/0"}},
            "secret_of": "push",
            "push_secrets": True,
        },
        {"dest": "/etc/m/m.json", "json": {"name": "m"}, "secret_of": "m", "push_secrets": False},
    ]
    secret, metrics = "s" * 43, "m" * 43
    filled = sidecar_secrets.with_secrets(
        entries, {"push": secret, "m": metrics}, "redis-pw", "token-key"
    )
    assert filled[0] == {"dest": "/etc/m/push.secret", "mode": "0600", "content": secret + "\n"}
    assert filled[1]["json"] == {
        "name": "push",
        "redis": {"url": "redis://127.0.0.1:6379/0", "password": "redis-pw"},
        "token_secret": "token-key",
        "secret": secret,
    }
    # Only the push sidecar's file: the dashboard's holds its own secret alone.
    assert filled[2] == {"dest": "/etc/m/m.json", "json": {"name": "m", "secret": metrics}}


def test_a_fleet_dashboards_settings_get_the_redis_password_alone() -> None:
    fleet = {"host": "web1", "redis": {"url": "redis://10.0.0.5:6379/0"}}
    entries = [
        {
            "dest": "/etc/m/m.json",
            "json": {"name": "m", "fleet": fleet},
            "secret_of": "m",
            "push_secrets": False,
            "fleet_secret": True,
        }
    ]
    (filled,) = sidecar_secrets.with_secrets(entries, {"m": "m" * 43}, "redis-pw", "token-key")
    assert filled["json"] == {
        "name": "m",
        "fleet": {
            "host": "web1",
            "redis": {"url": "redis://10.0.0.5:6379/0", "password": "redis-pw"},
        },
        "secret": "m" * 43,
    }
    # The plan's entry itself is left as it was: it is shown in --diff runs.
    assert "password" not in fleet["redis"]
