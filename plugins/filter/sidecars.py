"""The role's sidecars, resolved, and the settings file each one reads.

Built in Python rather than in Jinja so that numbers stay numbers on every
ansible-core the collection supports: ansible-core 2.18 and older turn a
number templated on its own ("{{ x | float }}") into a string, and the
sidecar then refused "1.0" as its poll interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def resolve_sidecars(
    items: Sequence[Mapping[str, Any]],
    defaults: Mapping[str, Any],
    run_dir: str,
    listen_host: str,
    capacity_websockets: int,
    allow_from: Sequence[str],
) -> list[dict[str, Any]]:
    """Every sidecar with its defaults filled in and its derived values.

    Derived: the unix socket's path (default RUN_DIR/NAME/sidecar.sock),
    server_metrics (on for the built-in dashboard only, unless set), the
    client cap (the role-wide one unless set), the allow-list (the role-wide
    one unless set), and the proxy targets Apache uses. Values are passed on
    as given: the role's checks, not this function, judge them.
    """
    resolved = []
    for item in items:
        sidecar = {**defaults, **item}
        socket = sidecar["socket"] or f"{run_dir}/{sidecar['name']}/sidecar.sock"
        if sidecar["listener"] == "unix":
            backend = f"unix:{socket}|http://localhost/"
            reverse_backend = "http://localhost/"
        else:
            backend = reverse_backend = f"http://{listen_host}:{sidecar['port']}/"
        builtin = sidecar["script"] == ""
        sidecar.update(
            socket=socket,
            server_metrics=builtin
            if sidecar["server_metrics"] is None
            else sidecar["server_metrics"],
            max_clients=(
                capacity_websockets if sidecar["max_clients"] is None else sidecar["max_clients"]
            ),
            allow_from=allow_from if sidecar["allow_from"] is None else sidecar["allow_from"],
            backend=backend,
            reverse_backend=reverse_backend,
        )
        resolved.append(sidecar)
    return resolved


def sidecar_settings(sidecar: Mapping[str, Any], listen_host: str, secret: str) -> dict[str, Any]:
    """What a resolved sidecar's NAME.json holds, with JSON's own types.

    Every sidecar gets its name, listener, client cap, extra origins and the
    secret Apache sends it (plugins/filter/sidecar_secrets.py). The
    built-in dashboard also gets its timing and buffer limits; a user's own
    script gets its URL prefix ("" for a whole virtual host).
    """
    if sidecar["listener"] == "unix":
        listen: dict[str, Any] = {"path": sidecar["socket"]}
    else:
        listen = {"host": listen_host, "port": int(sidecar["port"])}
    settings: dict[str, Any] = {
        "name": sidecar["name"],
        "listen": listen,
        "max_clients": int(sidecar["max_clients"]),
        "origins": list(sidecar["origins"]),
        "secret": secret,
    }
    if sidecar["script"] == "":
        settings.update(
            poll_interval=float(sidecar["poll_interval"]),
            heartbeat=float(sidecar["heartbeat"]),
            send_timeout=float(sidecar["send_timeout"]),
            max_send_buffer=int(sidecar["max_send_buffer"]),
        )
    else:
        settings["prefix"] = sidecar["mount"].rstrip("/")
    return settings


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"resolve_sidecars": resolve_sidecars, "sidecar_settings": sidecar_settings}
