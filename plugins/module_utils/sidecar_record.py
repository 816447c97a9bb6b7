"""One sidecar of the plan as a frozen record: the fields of its item in
mod_wsgi_ws_sidecar_sidecars over their defaults, and what the plan derives
from them. Built once; a later value (its pool, its settings) makes a new
record (`with_values`), never a change to this one.

The record reads as a mapping too (`sidecar["mount"]`), so the rules that
take any sidecar-shaped mapping (the sizing, the host rules, which tests
feed plain dicts) read it as they read those; `as_dict()` is what the
filter hands Ansible."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sidecar(Mapping[str, Any]):
    # --- the item's fields (meta/argument_specs.yml), defaults filled in.
    # A plan is computed from bad input too: the types are what a valid
    # item gives, and the plan's problems say where an item differs.
    name: str
    kind: str
    script: str
    python_path: Any
    listener: str
    port: Any
    socket: str
    mount: Any
    virtual_host: Any
    allow_from: Any
    require: Any
    internal: Any
    origins: Any
    server_metrics: Any
    proxy_timeout: Any
    max_clients: Any
    public_channels: Any
    fleet: Any
    processes: Any
    poll_interval: Any
    heartbeat: Any
    send_timeout: Any
    max_send_buffer: Any
    show_query_strings: Any
    history: Any
    max_channels: Any
    max_replay: Any
    channel_ttl: Any
    # --- derived by the plan.
    # Its place in mod_wsgi_ws_sidecar_sidecars, for the problems' names.
    index: int
    # Built into the package (else the user's own script).
    builtin: bool
    socket_dir: str
    # The socket's directory is the role's default one (RUN_DIR/NAME).
    own_socket_dir: bool
    # Apache's ProxyPass and ProxyPassReverse URLs, and what NAME.json says.
    backend: str
    reverse_backend: str
    listen: Mapping[str, Any]
    # The mount without its trailing "/".
    prefix: str
    # Connections per Apache child (ProxyPass max=), from the sizing.
    pool: int = 1
    # Its NAME.json without the secret.
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key not in FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(FIELDS)

    def __len__(self) -> int:
        return len(FIELDS)

    def with_values(self, **values: Any) -> Sidecar:
        return dataclasses.replace(self, **values)

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in FIELDS}


FIELDS = tuple(f.name for f in dataclasses.fields(Sidecar))
