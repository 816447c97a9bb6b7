"""Each sidecar's secret: what Apache adds to every request it proxies to
the sidecar, and the sidecar requires, so that a local user who reaches the
sidecar's listener directly is refused.

The role keeps each secret on the host (CONF_DIR/NAME.secret) and reuses it
from run to run: a well-formed stored secret is kept unless rotation is
asked for; a missing or malformed one is replaced by a new random one.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

# 32 random bytes, URL-safe base64 without padding: 43 characters that need
# no quoting in Apache's configuration, in an HTTP header or in JSON.
SECRET_BYTES = 32
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def stored_secret(slurped: Mapping[str, Any]) -> str | None:
    """The well-formed secret in a slurp result, or None (absent, unreadable, malformed)."""
    try:
        text = base64.b64decode(slurped.get("content", ""), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    text = text.strip()
    return text if SECRET_PATTERN.fullmatch(text) else None


def sidecar_secrets(found: Sequence[Mapping[str, Any]], rotate: bool = False) -> dict[str, str]:
    """Name -> secret, from the results of the role's slurp loop over the names."""
    chosen = {}
    for result in found:
        name = result[result["ansible_loop_var"]]
        kept = None if rotate else stored_secret(result)
        chosen[name] = kept or new_secret()
    return chosen


def with_secrets(
    entries: Sequence[Mapping[str, Any]],
    secrets: Mapping[str, str],
    redis_password: str = "",
    token_secret: str = "",
) -> list[dict]:
    """The plan's private write_files entries with each sidecar's secret in
    place: the whole NAME.secret file, or the `secret` field of NAME.json;
    a push sidecar's NAME.json also gets the Redis password and the token
    secret (variables, which the plan leaves out so it never shows them), a
    fleet's dashboard's the Redis password."""
    filled = []
    for entry in entries:
        entry = dict(entry)
        name = entry.pop("secret_of", None)
        push = entry.pop("push_secrets", False)
        fleet = entry.pop("fleet_secret", False)
        if name is not None and "json" in entry:
            entry["json"] = {**entry["json"], "secret": secrets[name]}
            if push:
                redis = {**entry["json"]["redis"], "password": redis_password}
                entry["json"].update(redis=redis, token_secret=token_secret)
            if fleet:
                fleet_redis = {**entry["json"]["fleet"]["redis"], "password": redis_password}
                entry["json"]["fleet"] = {**entry["json"]["fleet"], "redis": fleet_redis}
        elif name is not None:
            entry["content"] = secrets[name] + "\n"
        filled.append(entry)
    return filled


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sidecar_secrets": sidecar_secrets, "with_secrets": with_secrets}
