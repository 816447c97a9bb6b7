"""The role's two tables: the kinds of sidecar (what each runs and which
files of the package it needs on the host) and the modes (what each runs,
tests, reloads and supports). The plan (plan.py) reads them, so that its
code and the role's YAML never compare kind or mode names."""

from __future__ import annotations

from dataclasses import dataclass

# The Python package the role installs on a host (the collection's
# files/mod_wsgi_ws_sidecar/), under LIB_DIR/python, the one directory of the
# role's on the daemon processes' python-path.
PACKAGE = "mod_wsgi_ws_sidecar"
# What every kind needs: the core, its client cap and counters (with the
# dashboard's trends, which the counters read), the defaults, and the runner
# of a user's own script.
CORE_FILES = (
    "__init__.py",
    "core.py",
    "clients.py",
    "metrics.py",
    "trends.py",
    "defaults.json",
    "runner.py",
)


@dataclass(frozen=True)
class Kind:
    name: str
    # Built into the package (else the user's own script, run by runner.py).
    builtin: bool
    # The package module whose run_service(NAME.json) the service script calls.
    entry: str
    # Files of the package it needs besides CORE_FILES.
    files: tuple[str, ...]
    # Does the dashboard read the scoreboard for it (server-metrics=on)?
    server_metrics: bool


METRICS = Kind(
    name="metrics",
    builtin=True,
    entry="dashboard",
    files=("dashboard.py", "dashboard.html", "fleet.py"),
    server_metrics=True,
)
PUSH = Kind(
    name="push",
    builtin=True,
    entry="push_sidecar",
    files=("push.py", "push_sidecar.py", "push.html", "push.js"),
    server_metrics=False,
)
SCRIPT = Kind(name="script", builtin=False, entry="runner", files=(), server_metrics=False)
KINDS = {kind.name: kind for kind in (METRICS, PUSH, SCRIPT)}


def package_files(present: set[str]) -> dict[str, bool]:
    """Every file of the package, and whether the kinds present need it."""
    wanted = dict.fromkeys(CORE_FILES, True)
    for kind in KINDS.values():
        for name in kind.files:
            wanted[name] = wanted.get(name, False) or kind.name in present
    return wanted


@dataclass(frozen=True)
class Mode:
    name: str
    # The other mode, whose leftovers a run removes.
    other: str
    # The service that runs Apache, and its unit (keys of the role's constants).
    service: str
    unit: str
    # How its configuration is tested before Apache loads it, and its error
    # log (formatted with the role's constants).
    config_test: str
    error_log: str
    # Several processes per sidecar sharing a TCP port (SO_REUSEPORT);
    # mod_wsgi-express runs each service script in one.
    processes_per_sidecar: bool
    # A virtual environment always, with mod_wsgi from PyPI in it (mod_wsgi-express).
    own_venv: bool
    # TLS, the internal virtual host and sidecars at a virtual host of their own.
    virtual_hosts: bool
    # The names mod_wsgi shows for the application's daemon processes and a
    # sidecar's (display-name; formatted with group, name and port), by which
    # the application alone is restarted. mod_wsgi-express names the
    # application's after its host, port and the uid that generated it (root).
    app_display_name: str
    sidecar_display_name: str


SYSTEM = Mode(
    name="system",
    other="express",
    service="apache_service",
    unit="apache_unit",
    config_test="apache2ctl -t",
    error_log="{apache_error_log}",
    processes_per_sidecar=True,
    own_venv=False,
    virtual_hosts=True,
    app_display_name="(wsgi:{group})",
    sidecar_display_name="(wsgi:{name})",
)
EXPRESS = Mode(
    name="express",
    other="system",
    service="express_service",
    unit="express_unit",
    config_test="{express_root}/apachectl configtest",
    error_log="{express_logs}/error_log",
    processes_per_sidecar=False,
    own_venv=True,
    virtual_hosts=False,
    app_display_name="(wsgi:localhost:{port}:0)",
    sidecar_display_name="(wsgi:service:{name})",
)
MODES = {mode.name: mode for mode in (SYSTEM, EXPRESS)}
