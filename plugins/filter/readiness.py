"""Where the role's readiness check (the wait_for_sidecars module) looks.

Every probe runs on the web host, on its own addresses: a sidecar's own
listener, and Apache where it serves that sidecar (its mount on the main
virtual host, its whole virtual host, or its mount on the internal one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

LOOPBACK = "127.0.0.1"


def front_end(tls: bool, server_name: str, path: str) -> dict[str, Any]:
    """The main virtual host on this machine: HTTPS when the site has TLS."""
    return {
        "host": LOOPBACK,
        "port": 443 if tls else 80,
        "tls": bool(tls),
        "host_header": server_name or LOOPBACK,
        "path": path,
    }


def readiness_checks(
    sidecars: Sequence[Mapping[str, Any]],
    listen_host: str,
    tls: bool,
    server_name: str,
    internal: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """For each resolved sidecar: its name, its listener and Apache's front for it."""
    checks = []
    for sidecar in sidecars:
        if sidecar["listener"] == "unix":
            listener: dict[str, Any] = {"path": sidecar["socket"]}
        else:
            listener = {"host": listen_host, "port": int(sidecar["port"])}
        if sidecar["internal"]:
            front = {
                "host": internal["address"],
                "port": int(internal["port"]),
                "tls": False,
                "host_header": internal["apache"],
                "path": sidecar["mount"],
            }
        elif sidecar["virtual_host"]:
            front = front_end(tls, sidecar["virtual_host"], "/")
        else:
            front = front_end(tls, server_name, sidecar["mount"])
        checks.append({"name": sidecar["name"], "listener": listener, "front": front})
    return checks


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"readiness_checks": readiness_checks, "readiness_front_end": front_end}
