"""Reads the addresses operators give the role, with Python's own parser.

A typo in an allow-list must fail the run before Apache sees it: Apache would
reject "Require ip 10.0.0.0/33" only at the configuration test, and would take
"10.1" as the network 10.1.0.0/16 without complaint.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any


def invalid_networks(entries: Sequence[Any]) -> list[str]:
    """The allow-list entries that are neither "all" nor an address or CIDR network."""
    bad = []
    for entry in entries:
        if entry == "all":
            continue
        try:
            ipaddress.ip_network(str(entry), strict=False)
        except ValueError:  # also refuses shortened IPv4 such as "10.1"
            bad.append(str(entry))
    return bad


def parse_listen(text: str) -> dict[str, Any]:
    """ADDRESS:PORT (IPv6 in brackets) as {'address', 'port', 'apache'}; {} if invalid."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return {}
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return {}
    if address.version == 6 and not bracketed:
        return {}
    shown = f"[{address}]" if address.version == 6 else str(address)
    return {"address": str(address), "port": int(port), "apache": f"{shown}:{int(port)}"}
