"""The role's plan: every value derived from its public variables, and every
problem with them, computed once in Python.

The role calls this once (tasks/plan.yml, through the filter
mod_wsgi_ws_sidecar.apache.plan) and its tasks and templates only read the
result. Every rule that does not need the host lives here: shapes, ranges,
collisions and combinations. What needs the host (files that must exist,
addresses it has, ports other programs hold, its open-files limit, its
Python versions) is checked by tasks/host_checks.yml.

A plan is computed even from bad input: `problems` lists what is wrong, one
sentence each naming the variable, and the role stops on it before any
change. The derived values of a plan with problems are never used.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.addresses import (
    invalid_networks,
    parse_listen,
)
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.files import sidecar_files
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.host_rules import (
    DEBIAN_PYTHON,
    what_to_look_at,
)
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.kinds import (
    KINDS,
    METRICS,
    MODES,
    PACKAGE,
    PUSH,
    SCRIPT,
    SYSTEM,
    Mode,
    package_files,
)
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.sidecar_record import (
    Sidecar,
)
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.sizing import mpm_sizing
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.static_files import (
    express_args as static_express_args,
)
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.static_files import (
    has_odd_segments,
    static_plan,
)

PREFIX = "mod_wsgi_ws_sidecar_"
SIDECARS = PREFIX + "sidecars"

# Fields a sidecar item may leave out (meta/argument_specs.yml gives the same
# defaults; tests/test_role_docs.py checks they agree). The sidecars' own
# settings come on top, from the package's defaults.json (TUNABLES), the one
# source the sidecars read too.
SIDECAR_DEFAULTS: dict[str, Any] = {
    "kind": None,
    "script": "",
    "python_path": [],
    "listener": "tcp",
    "port": None,
    "socket": "",
    "mount": "",
    "virtual_host": "",
    "allow_from": None,
    "require": [],
    "internal": False,
    "origins": [],
    "server_metrics": None,
    "proxy_timeout": None,
    "max_clients": None,
    "public_channels": [],
    "fleet": False,
    "processes": None,
}
# The settings of defaults.json a sidecar item may set; max_clients's
# default is mod_wsgi_ws_sidecar_capacity_websockets instead.
TUNABLES = (
    "poll_interval",
    "heartbeat",
    "send_timeout",
    "max_send_buffer",
    "show_query_strings",
    "history",
    "max_channels",
    "max_replay",
    "channel_ttl",
)
# What an item of mod_wsgi_ws_sidecar_sidecars may hold; the rest of a
# Sidecar record is derived.
ITEM_FIELDS = frozenset({"name", *SIDECAR_DEFAULTS, *TUNABLES})

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
LOCALE = re.compile(r"[A-Za-z][A-Za-z0-9_.@-]{0,63}")
# The application daemon's timeouts, as mod_wsgi-express sets them (each a
# variable app_NAME; the option is NAME with "-").
APP_TIMEOUTS = (
    "request_timeout",
    "queue_timeout",
    "socket_timeout",
    "connect_timeout",
    "graceful_timeout",
    "startup_timeout",
    "shutdown_timeout",
)
USER_NAME = re.compile(r"[A-Za-z0-9._@-]+")
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
# An origin: scheme, host (a name or a bracketed IPv6 address), optional port.
ORIGIN = re.compile(
    r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?"
)
# Absolute paths that need no quoting in Apache's configuration.
PATH = re.compile(r'/[^\s"]+')
# python-path entries: the same, without the ":" that separates them.
PYTHON_PATH = re.compile(r'/[^\s:"]+')
APP_MOUNT = re.compile(r"/([A-Za-z0-9._~/-]*[A-Za-z0-9._~-])?")
SIDECAR_MOUNT = re.compile(r"/[A-Za-z0-9._~/-]*/")
SOCKET = re.compile(r"/[A-Za-z0-9._/-]+")
SOCKET_MAX = 100
REALM = re.compile(r"[A-Za-z0-9 ._,:()-]{1,100}")
PASSWORD = re.compile(r"[^\r\n]{1,72}")
REQUIRE_RULE = re.compile(r"[^\n<>]+")
# Push channels: names as mod_wsgi_ws_sidecar.push.CHANNEL, with shell patterns.
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9._:@*?\[\]-]{1,100}")
REDIS_URL = re.compile(
    r"rediss?://([^\s@/]+@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(/[0-9]{1,2})?"
)
# Secrets shared with the application: printable, no spaces or quotes.
SHARED_SECRET = re.compile(r"[!#-&(-~]+")
MAX_HISTORY = 1_000_000
# Channels one push connection may hold: each is a key in the relay's XREAD.
MAX_CHANNELS = 1000
# Requirement specs pip accepts from the variables: no options, no spaces.
REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\[\],<>=!~*-]*")
VERSION = re.compile(r"[0-9]+(\.[0-9]+)*([a-z]+[0-9]*)?")
INDEX_URL = re.compile(r"https?://\S+")
# A unix socket's directory, or a virtual environment, is made the role's
# own (mode, owner, removal), so it must not be a shared system directory.
SHARED_DIRS = frozenset(
    [
        "/",
        "/run",
        "/var/run",
        "/tmp",
        "/var/tmp",
        "/var",
        "/var/lib",
        "/etc",
        "/usr",
        "/usr/local",
        "/home",
        "/root",
        "/srv",
        "/opt",
    ]
)
HTTP_PORT = 80
HTTPS_PORT = 443
LOOPBACK = "127.0.0.1"
# A built-in sidecar's processes by default: one per this many clients of its
# max_clients, up to the host's cores. One process fans a tick out to 10,000
# clients in about 0.3 s on these machines (docs/benchmarks.md), one core.
CLIENTS_PER_PROCESS = 2500
# The most processes of one sidecar (the package's clients.py: half its slots,
# the rest for the processes of the Apache generation before, still ending).
MAX_PROCESSES = 32


def matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def whole(value: Any, minimum: int) -> bool:
    """A whole number (not a bool) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


class Plan:
    """Reads the variables (without their prefix) and collects problems."""

    def __init__(self, variables: Mapping[str, Any], constants: Mapping[str, Any]):
        self.v = {k[len(PREFIX) :]: val for k, val in variables.items() if k.startswith(PREFIX)}
        self.c = constants
        self.mode = MODES.get(self.v["mode"], SYSTEM)
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(" ".join(text.split()))

    # --- the application and the site --------------------------------------
    def check_site(self) -> None:
        v = self.v
        if v["mode"] not in MODES:
            self.problem(
                f"""mod_wsgi_ws_sidecar_mode must be one of {", ".join(MODES)}; got
                "{v["mode"]}"."""
            )
        if "script_src" in v:
            self.problem(
                """mod_wsgi_ws_sidecar_script_src is no longer read: the built-in sidecars
                ship as the package mod_wsgi_ws_sidecar in the collection's files/; remove
                the variable (a sidecar of your own takes script:)."""
            )
        if not matches(APP_MOUNT, v["app_mount"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_app_mount must be "/" or a URL path with a leading
                and no trailing "/"; got "{v["app_mount"]}"."""
            )
        if not matches(NAME, v["app_process_group"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_app_process_group must be a name of letters, digits,
                "-" and "_", starting with a letter; got "{v["app_process_group"]}"."""
            )
        if v["app_script"] != "" and not matches(PATH, v["app_script"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_app_script must be empty (demo app) or an absolute
                path without spaces; got "{v["app_script"]}"."""
            )
        if not all(matches(PYTHON_PATH, p) for p in v["app_python_path"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_app_python_path entries must be absolute paths
                without spaces or ":"; got {v["app_python_path"]}."""
            )
        if v["server_name"] != "" and not matches(HOST_NAME, v["server_name"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_server_name must be a host name or empty; got
                "{v["server_name"]}"."""
            )
        for count in ("app_processes", "app_threads", "capacity_http", "ready_timeout"):
            if not whole(v[count], 1):
                self.problem(f"{PREFIX}{count} must be a whole number of at least 1.")
        for timeout in APP_TIMEOUTS:
            if not whole(v[f"app_{timeout}"], 0):
                self.problem(
                    f"""{PREFIX}app_{timeout} must be a whole number of seconds (0 turns it
                    off); got {v[f"app_{timeout}"]}."""
                )
        size = v["app_header_buffer_size"]
        if not (whole(size, 0) and (size == 0 or size >= 8192)):
            self.problem(
                f"""mod_wsgi_ws_sidecar_app_header_buffer_size must be 0 (mod_wsgi's own) or
                a whole number of bytes of at least 8192; got {size}."""
            )
        if not matches(LOCALE, v["app_locale"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_app_locale must be a locale name like C.UTF-8 or
                en_US.UTF-8; got "{v["app_locale"]}"."""
            )
        if v["timeout"] is not None and not whole(v["timeout"], 1):
            self.problem(
                f"""mod_wsgi_ws_sidecar_timeout must be null or a whole number of seconds of
                at least 1; got {v["timeout"]}."""
            )
        if bad := invalid_networks(v["allow_from"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_allow_from must list IP addresses or CIDR networks
                (or "all"); these are neither: {", ".join(bad)}."""
            )
        directives = strings(v["extra_directives"])
        if any(re.search(r"[\r\n]", d) for d in directives) or not all(
            d.strip() for d in directives
        ):
            self.problem(
                f"""mod_wsgi_ws_sidecar_extra_directives must list Apache directives of one
                line each; got {v["extra_directives"]}."""
            )
        if v["tls"]:
            for name in ("tls_certificate", "tls_certificate_key"):
                if not matches(PATH, v[name]):
                    self.problem(
                        f"""{PREFIX}{name} must be the absolute path of a file on the host
                        when mod_wsgi_ws_sidecar_tls is true; got "{v[name]}"."""
                    )

    # Names only in the message: the passwords are never printed.
    def check_auth(self) -> None:
        users = self.v["auth_users"]
        names = [str(u.get("name", "")) for u in users]
        passwords = [str(u.get("password", "")) for u in users]
        if (
            not all(matches(USER_NAME, n) for n in names)
            or len(set(names)) != len(names)
            or not all(matches(PASSWORD, p) for p in passwords)
            or not matches(REALM, self.v["auth_realm"])
        ):
            self.problem(
                f"""mod_wsgi_ws_sidecar_auth_users needs unique names of letters, digits,
                ".", "_", "-" and "@", and passwords of 1 to 72 characters on one line;
                mod_wsgi_ws_sidecar_auth_realm 1 to 100 letters, digits, spaces and
                ".,:()_-". Names given: {", ".join(names)}."""
            )

    def internal_host(self, sidecars: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        text = self.v["internal_listen"]
        if text == "":
            return {}
        internal = parse_listen(text)
        tcp_ports = [s["port"] for s in sidecars if s["listener"] == "tcp"]
        if not internal or internal["port"] in (HTTP_PORT, HTTPS_PORT, *tcp_ports):
            self.problem(
                f"""mod_wsgi_ws_sidecar_internal_listen must be ADDRESS:PORT (IPv6 in
                brackets) on a port other than 80, 443 and the sidecars' own; got
                "{text}"."""
            )
            return {}
        return internal

    # --- the sidecars ------------------------------------------------------
    def resolve(self, item: Mapping[str, Any], index: int) -> Sidecar:
        """One sidecar with its defaults filled in and its derived values."""
        tunables = {key: self.c["sidecar_defaults"][key] for key in TUNABLES}
        unknown = sorted(set(item) - ITEM_FIELDS)
        if unknown:
            self.problem(f"{SIDECARS}[{index}] has fields the role does not know: {unknown}.")
        known = {key: value for key, value in item.items() if key in ITEM_FIELDS}
        sidecar = {**SIDECAR_DEFAULTS, **tunables, **known}
        name = str(sidecar.get("name", ""))
        own_dir = f"{self.c['run_dir']}/{name}"
        socket = sidecar["socket"] or f"{own_dir}/sidecar.sock"
        builtin = sidecar["script"] == ""
        kind = sidecar["kind"] or (METRICS.name if builtin else SCRIPT.name)
        if sidecar["listener"] == "unix":
            backend = f"unix:{socket}|http://localhost/"
            reverse_backend = "http://localhost/"
            listen: dict[str, Any] = {"path": socket}
        else:
            backend = reverse_backend = f"http://{self.c['listen_host']}:{sidecar['port']}/"
            listen = {"host": self.c["listen_host"], "port": sidecar["port"]}
        if sidecar["server_metrics"] is None:
            sidecar["server_metrics"] = KINDS[kind].server_metrics if kind in KINDS else False
        if sidecar["max_clients"] is None:
            sidecar["max_clients"] = self.v["capacity_websockets"]
        if sidecar["allow_from"] is None:
            sidecar["allow_from"] = self.v["allow_from"]
        if sidecar["processes"] is None:
            sidecar["processes"] = self.default_processes(sidecar, builtin)
        sidecar.update(
            name=name,
            socket=socket,
            socket_dir=posixpath.dirname(socket),
            own_socket_dir=posixpath.dirname(socket) == own_dir,
            builtin=builtin,
            kind=kind,
            backend=backend,
            reverse_backend=reverse_backend,
            listen=listen,
            prefix=sidecar["mount"].rstrip("/") if isinstance(sidecar["mount"], str) else "",
            index=index,
        )
        return Sidecar(**sidecar)

    def default_processes(self, sidecar: Mapping[str, Any], builtin: bool) -> int:
        """Several processes share a TCP port (SO_REUSEPORT) in system mode; a unix
        socket, a user's script and mod_wsgi-express's service scripts take one."""
        cap = sidecar["max_clients"]
        if not (builtin and sidecar["listener"] == "tcp" and self.mode.processes_per_sidecar):
            return 1
        if not whole(cap, 1):
            return 1  # reported by check_sidecar
        wanted = -(-cap // CLIENTS_PER_PROCESS)
        return max(1, min(wanted, int(self.c["host_cpus"]), MAX_PROCESSES))

    def check_processes(self, at: str, s: Mapping[str, Any]) -> None:
        if not whole(s["processes"], 1) or s["processes"] > MAX_PROCESSES:
            self.problem(
                f"""{at}.processes must be null (sized from the host's cores) or a whole
                number from 1 to {MAX_PROCESSES}; got {s["processes"]}."""
            )
        elif s["processes"] > 1 and not s["builtin"]:
            self.problem(
                f"""{at}.processes above 1 is for the built-in sidecars, which share their
                port and their client cap across processes; your script "{s["script"]}"
                would have to do both itself. Leave processes out (1)."""
            )
        elif s["processes"] > 1 and s["listener"] != "tcp":
            self.problem(
                f"""{at}.processes above 1 needs listener "tcp": Linux spreads the
                connections of one TCP port over processes (SO_REUSEPORT) but not those of
                a unix socket, which only one process can bind. Use a TCP port, or one
                process."""
            )
        elif s["processes"] > 1 and not self.mode.processes_per_sidecar:
            self.problem(
                f"""{at}.processes above 1 needs mod_wsgi_ws_sidecar_mode=system:
                mod_wsgi-express runs each service script in one process."""
            )

    def check_sidecar(self, at: str, s: Mapping[str, Any], front_end_ports: list[int]) -> None:
        v = self.v
        if not matches(NAME, s["name"]):
            self.problem(
                f"""{at}.name must be a name of letters, digits, "-" and "_", starting with a
                letter; got "{s["name"]}"."""
            )
        if (s["mount"] == "") == (s["virtual_host"] == ""):
            self.problem(
                f"""{at} needs exactly one of mount (a URL path such as /ws/) and
                virtual_host (a host name); got mount "{s["mount"]}" and virtual_host
                "{s["virtual_host"]}"."""
            )
        mount = s["mount"]
        if mount != "" and (
            not matches(SIDECAR_MOUNT, mount)
            or mount == "/"
            or has_odd_segments(mount)
            or mount == str(v["app_mount"]).rstrip("/") + "/"
        ):
            self.problem(
                f"""{at}.mount must be a URL path below the site root that starts and ends
                with "/" (for example /metrics/), with no empty, "." or ".." segments, other
                than the application's mount; got "{mount}"."""
            )
        if s["virtual_host"] != "" and not matches(HOST_NAME, s["virtual_host"]):
            self.problem(f'{at}.virtual_host must be a host name; got "{s["virtual_host"]}".')
        if s["listener"] == "tcp":
            if not whole(s["port"], 1) or s["port"] > 65535:
                self.problem(
                    f"""{at}.port must be a TCP port from 1 to 65535 with listener "tcp";
                    got {s["port"]}."""
                )
            elif s["port"] in front_end_ports:
                self.problem(
                    f"""{at}.port {s["port"]} is a port Apache itself listens on
                    ({", ".join(map(str, front_end_ports))}): the sidecar could not bind it,
                    and its mount would proxy back into Apache. Choose another port."""
                )
        else:
            socket = s["socket"]
            if (
                not matches(SOCKET, socket)
                or "/../" in socket + "/"
                or s["socket_dir"] in SHARED_DIRS
                or len(socket) > SOCKET_MAX
            ):
                self.problem(
                    f"""{at}.socket must be an absolute path of at most {SOCKET_MAX}
                    characters in a directory of its own (not a shared one such as /run or
                    /tmp); got "{socket}"."""
                )
        if (s["script"] != "" and not matches(PATH, s["script"])) or not all(
            matches(PYTHON_PATH, p) for p in s["python_path"]
        ):
            self.problem(
                f"""{at}.script must be empty (the built-in dashboard) or an absolute path
                without spaces, and its python_path absolute paths without spaces or ":";
                got "{s["script"]}" and {s["python_path"]}."""
            )
        if bad := invalid_networks(s["allow_from"]):
            self.problem(
                f"""{at}.allow_from (or, when it is null, mod_wsgi_ws_sidecar_allow_from)
                must list IP addresses or CIDR networks (or "all"); these are neither:
                {", ".join(bad)}."""
            )
        if not all(matches(REQUIRE_RULE, r) for r in s["require"]) or not (
            s["allow_from"] or s["require"] or v["auth_users"]
        ):
            self.problem(
                f"""{at} must admit someone (allow_from, mod_wsgi_ws_sidecar_auth_users or
                require), and each of its require rules must be one Apache Require rule on
                one line (for example "group ops"); got allow_from {s["allow_from"]} and
                require {s["require"]}."""
            )
        if not all(matches(ORIGIN, o) for o in s["origins"]):
            self.problem(
                f"""{at}.origins must list origins such as https://example.com or
                http://10.0.0.5:8080 (scheme, host, optional port, no path); got
                {s["origins"]}."""
            )
        if s["internal"] and (v["internal_listen"] == "" or mount == ""):
            self.problem(
                f"""{at}.internal needs mod_wsgi_ws_sidecar_internal_listen (the internal
                virtual host's ADDRESS:PORT) and a mount (not a virtual_host)."""
            )
        if s["proxy_timeout"] is not None and not whole(s["proxy_timeout"], 1):
            self.problem(
                f"""{at}.proxy_timeout must be null or a whole number of seconds of at least
                1; got {s["proxy_timeout"]}."""
            )
        if not whole(s["max_clients"], 1):
            self.problem(
                f"""{at}.max_clients (or, when it is null,
                mod_wsgi_ws_sidecar_capacity_websockets) must be a whole number of at least
                1; got {s["max_clients"]}."""
            )
        if s["kind"] != SCRIPT.name and not s["builtin"]:
            self.problem(
                f"""{at}.kind {s["kind"]} names a built-in sidecar: leave script empty, or
                leave kind out for your own script; got script "{s["script"]}"."""
            )
        if s["builtin"] and not (
            positive(s["poll_interval"])
            and positive(s["heartbeat"])
            and positive(s["send_timeout"])
            and whole(s["max_send_buffer"], 4096)
        ):
            self.problem(
                f"""{at}: poll_interval, heartbeat and send_timeout must be seconds above 0
                and max_send_buffer at least 4096 bytes (one tick must fit)."""
            )

    def check_push(self, at: str, s: Mapping[str, Any]) -> None:
        if not isinstance(s["public_channels"], list) or not all(
            matches(CHANNEL_PATTERN, c) for c in s["public_channels"]
        ):
            self.problem(
                f"""{at}.public_channels must list channel names or shell patterns (letters,
                digits, . _ : @ - and * ? [ ]), for example "news" or "orders.*"; got
                {s["public_channels"]}."""
            )
        if not whole(s["history"], 1) or s["history"] > MAX_HISTORY:
            self.problem(
                f"""{at}.history must be a whole number of messages from 1 to {MAX_HISTORY};
                got {s["history"]}."""
            )
        if not whole(s["max_channels"], 1) or s["max_channels"] > MAX_CHANNELS:
            self.problem(
                f"""{at}.max_channels must be a whole number of channels from 1 to
                {MAX_CHANNELS}; got {s["max_channels"]}."""
            )
        if not whole(s["channel_ttl"], 60):
            self.problem(
                f"""{at}.channel_ttl must be a whole number of seconds, 60 or more; got
                {s["channel_ttl"]}."""
            )
        if not whole(s["max_replay"], 1) or s["max_replay"] > MAX_HISTORY:
            self.problem(
                f"""{at}.max_replay must be a whole number of messages from 1 to {MAX_HISTORY};
                got {s["max_replay"]}."""
            )

    def check_fleet(self, sidecars: Sequence[Mapping[str, Any]], push: bool) -> None:
        """The fleet's dashboard: a built-in dashboard's, over the push channel's Redis."""
        for s in sidecars:
            at = f"{SIDECARS}[{s['index']}]"
            if not isinstance(s["fleet"], bool):
                self.problem(f"""{at}.fleet must be true or false; got "{s["fleet"]}".""")
            elif s["fleet"] and s["kind"] != METRICS.name:
                self.problem(
                    f"""{at}.fleet is for the built-in dashboard (kind metrics), which shows
                    every host of the fleet; sidecar "{s["name"]}" is kind {s["kind"]}."""
                )
            elif s["fleet"] and not push:
                self.problem(
                    f"""{at}.fleet shares rows with the other hosts through the push channel's
                    Redis: list a push sidecar (kind: push) too."""
                )
            if not isinstance(s["show_query_strings"], bool):
                self.problem(
                    f"""{at}.show_query_strings must be true or false;
                    got "{s["show_query_strings"]}"."""
                )
            elif s["show_query_strings"] and s["kind"] != METRICS.name:
                self.problem(
                    f"""{at}.show_query_strings is for the built-in dashboard (kind metrics),
                    which shows request lines; sidecar "{s["name"]}" is kind {s["kind"]}."""
                )

    def check_redis(self) -> None:
        """The push channel's Redis and shared secrets; never shows a secret."""
        v = self.v
        if not matches(REDIS_URL, v["redis_url"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_redis_url must be a redis:// or rediss:// URL such as
                redis://127.0.0.1:6379/0 (no password in it: set
                mod_wsgi_ws_sidecar_redis_password); got "{v["redis_url"]}"."""
            )
        elif "@" in v["redis_url"]:
            self.problem(
                """mod_wsgi_ws_sidecar_redis_url must not carry a user or password: set
                mod_wsgi_ws_sidecar_redis_username and mod_wsgi_ws_sidecar_redis_password."""
            )
        elif v["redis_install"] and v["redis_url"].startswith("rediss://"):
            self.problem(
                """mod_wsgi_ws_sidecar_redis_install sets up Redis without TLS: use a
                redis:// URL, or point at your own TLS Redis with
                mod_wsgi_ws_sidecar_redis_install: false."""
            )
        found = REDIS_URL.fullmatch(str(v["redis_url"]))
        if v["redis_install"] and found and not is_address(found.group(2).strip("[]")):
            self.problem(
                f"""mod_wsgi_ws_sidecar_redis_install binds Redis to the address in
                mod_wsgi_ws_sidecar_redis_url, so it must be an IP address (or localhost),
                not a name; got "{found.group(2)}"."""
            )
        if v["redis_host"] and v["redis_host"] not in self.c["inventory_hosts"]:
            self.problem(
                f"""mod_wsgi_ws_sidecar_redis_host must be empty (this host) or a host of the
                inventory, where the role then installs Redis; got "{v["redis_host"]}"."""
            )
        if not matches(USER_NAME, v["redis_username"]) or v["redis_username"] == "default":
            self.problem(
                f"""mod_wsgi_ws_sidecar_redis_username must be a name of letters, digits and
                . _ @ - other than "default"; got "{v["redis_username"]}"."""
            )
        password, token_secret = v["redis_password"], v["push_token_secret"]
        if not (matches(SHARED_SECRET, password) and len(password) >= 16):
            self.problem(
                """mod_wsgi_ws_sidecar_redis_password must be set, with a push sidecar, to at
                least 16 printable characters without spaces or quotes (keep it in Ansible
                Vault)."""
            )
        if not (matches(SHARED_SECRET, token_secret) and len(token_secret) >= 32):
            self.problem(
                """mod_wsgi_ws_sidecar_push_token_secret must be set, with a push sidecar, to
                at least 32 printable characters without spaces or quotes, the same on every
                host (keep it in Ansible Vault)."""
            )
        if not whole(v["redis_maxmemory_mb"], 16):
            self.problem(
                f"""mod_wsgi_ws_sidecar_redis_maxmemory_mb must be a whole number of megabytes,
                16 or more; got {v["redis_maxmemory_mb"]}."""
            )
        if v["redis_appendfsync"] not in ("everysec", "always"):
            self.problem(
                f"""mod_wsgi_ws_sidecar_redis_appendfsync must be everysec or always; got
                "{v["redis_appendfsync"]}"."""
            )
        if v["redis_ca_file"] != "" and not matches(PATH, v["redis_ca_file"]):
            self.problem(
                f"""mod_wsgi_ws_sidecar_redis_ca_file must be empty or an absolute path; got
                "{v["redis_ca_file"]}"."""
            )

    def check_collisions(self, sidecars: Sequence[Mapping[str, Any]]) -> None:
        for field in ("name", "port", "socket", "mount", "virtual_host"):
            chosen = sidecars
            if field in ("port", "socket"):
                listener = "unix" if field == "socket" else "tcp"
                chosen = [s for s in sidecars if s["listener"] == listener]
            used = [str(s[field]) for s in chosen if s[field]]
            if field == "name":
                used.append(str(self.v["app_process_group"]))
            if field == "virtual_host" and self.v["server_name"]:
                used.append(str(self.v["server_name"]))
            if len(set(used)) != len(used):
                self.problem(
                    f"""{SIDECARS}: each sidecar needs its own {field}, different from the
                    others' (and a name from the application's process group, a virtual host
                    from the site's server name); got {", ".join(used)}."""
                )

    # --- Python and the mode -----------------------------------------------
    def venv(self) -> str:
        if self.v["venv"]:
            return str(self.v["venv"])
        return self.c["default_venv"] if self.mode.own_venv else ""

    def check_python(self, venv: str, sidecars: Sequence[Mapping[str, Any]]) -> None:
        v = self.v
        if (
            (venv != "" and not matches(PYTHON_PATH, venv))
            or venv.rstrip("/") in SHARED_DIRS
            or not matches(PATH, v["venv_python"])
        ):
            self.problem(
                f"""mod_wsgi_ws_sidecar_venv must be empty or an absolute path of its own
                (not a system directory, no spaces or ":"), and
                mod_wsgi_ws_sidecar_venv_python an absolute path; got "{v["venv"]}" and
                "{v["venv_python"]}"."""
            )
        if (
            not matches(VERSION, v["aiohttp_version"])
            or not matches(VERSION, v["mod_wsgi_version"])
            or not all(matches(REQUIREMENT, r) for r in v["python_requirements"])
        ):
            self.problem(
                f"""mod_wsgi_ws_sidecar_aiohttp_version and mod_wsgi_ws_sidecar_mod_wsgi_version
                must be versions like 3.14.5, and mod_wsgi_ws_sidecar_python_requirements
                requirement specs like "flask==3.1.2" (no pip options, no spaces); got
                "{v["aiohttp_version"]}", "{v["mod_wsgi_version"]}" and
                {v["python_requirements"]}."""
            )
        if (v["pip_index_url"] != "" and not matches(INDEX_URL, v["pip_index_url"])) or (
            v["pip_ca_bundle"] != "" and not matches(PATH, v["pip_ca_bundle"])
        ):
            self.problem(
                f"""mod_wsgi_ws_sidecar_pip_index_url must be empty or an http(s) URL, and
                mod_wsgi_ws_sidecar_pip_ca_bundle empty or an absolute path; got
                "{v["pip_index_url"]}" and "{v["pip_ca_bundle"]}"."""
            )
        source = v["mod_wsgi_source"]
        if (self.mode.own_venv and source == "distro") or (venv == "" and source == "pypi"):
            self.problem(
                f"""mod_wsgi_ws_sidecar_mod_wsgi_source={source} does not fit: express mode
                uses mod_wsgi from PyPI only, and mod_wsgi from PyPI is installed into a
                virtual environment (set mod_wsgi_ws_sidecar_venv)."""
            )
        # What mod_wsgi-express's generated server cannot do as this role drives it.
        if not self.mode.virtual_hosts and (
            v["tls"] or v["internal_listen"] != "" or any(s["virtual_host"] for s in sidecars)
        ):
            self.problem(
                """mod_wsgi_ws_sidecar_mode=express serves sidecars at a mount over plain
                HTTP only: TLS (mod_wsgi_ws_sidecar_tls), the internal virtual host
                (mod_wsgi_ws_sidecar_internal_listen) and sidecars with a virtual_host need
                mod_wsgi_ws_sidecar_mode=system."""
            )

    def check_sizing(self, mpm: Mapping[str, Any]) -> None:
        if mpm["problem"]:
            self.problem(
                f"""mod_wsgi_ws_sidecar_capacity_http and the sidecars' max_clients
                (mod_wsgi_ws_sidecar_capacity_websockets): {mpm["problem"]}; lower them or
                spread the load over more servers."""
            )


def shared_count(sidecar: Mapping[str, Any]) -> bool:
    """Does the sidecar run as several processes, which share its client count?"""
    return whole(sidecar["processes"], 2)


def fleet_settings(redis: Mapping[str, Any], host: str) -> dict[str, Any]:
    """What a dashboard with `fleet` tells the other hosts, and where (the
    Redis password is added on the host, with_secrets)."""
    return {
        "host": host,
        "redis": {"url": redis["url"], "username": redis["username"], "ca_file": redis["ca_file"]},
    }


def websocket_routes(sidecars: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Where a dashboard counts each sidecar's open WebSockets on the
    scoreboard, against its max_clients: a virtual host's every path, a
    built-in sidecar's mount's ws, a script's anywhere below its mount."""
    return [
        {
            "name": s["name"],
            "max_clients": s["max_clients"],
            **(
                {"host": s["virtual_host"]}
                if s["virtual_host"]
                else {"path": s["mount"] + ("ws" if s["builtin"] else "")}
            ),
        }
        for s in sidecars
    ]


def settings(
    sidecar: Mapping[str, Any],
    redis: Mapping[str, Any],
    fleet: Mapping[str, Any],
    routes: Sequence[Mapping[str, Any]],
    metrics_dir: str,
    shared_dir: str,
) -> dict[str, Any]:
    """What the sidecar's NAME.json holds, but its secret (added on the host)."""
    written: dict[str, Any] = {
        "name": sidecar["name"],
        "listen": sidecar["listen"],
        "max_clients": sidecar["max_clients"],
        "origins": list(sidecar["origins"]),
    }
    if sidecar["builtin"] and metrics_dir:
        # Its counters, for the dashboard's Prometheus endpoint.
        written["metrics_dir"] = metrics_dir
    if sidecar["kind"] == PUSH.name:
        written.update(
            kind=PUSH.name,
            heartbeat=float(sidecar["heartbeat"]),
            send_timeout=float(sidecar["send_timeout"]),
            max_send_buffer=sidecar["max_send_buffer"],
            public_channels=list(sidecar["public_channels"]),
            history=sidecar["history"],
            max_channels=sidecar["max_channels"],
            max_replay=sidecar["max_replay"],
            channel_ttl=sidecar["channel_ttl"],
            # The password and the token secret are added on the host (with_secrets).
            redis={
                "url": redis["url"],
                "username": redis["username"],
                "ca_file": redis["ca_file"],
            },
        )
    elif sidecar["builtin"]:
        written.update(
            poll_interval=float(sidecar["poll_interval"]),
            heartbeat=float(sidecar["heartbeat"]),
            send_timeout=float(sidecar["send_timeout"]),
            max_send_buffer=sidecar["max_send_buffer"],
            sidecars=list(routes),
            show_query_strings=sidecar["show_query_strings"] is True,
        )
        if sidecar["fleet"] is True:
            written["fleet"] = dict(fleet)
    else:
        written["prefix"] = sidecar["prefix"]
    if shared_count(sidecar):
        # Its processes keep their count of clients there.
        written.update(
            processes=sidecar["processes"],
            clients_file=f"{shared_dir}/{sidecar['name']}.clients",
        )
    return written


def is_address(host: str) -> bool:
    """An IP address, or localhost: what Redis's bind takes."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def redis_bind(host: str) -> str:
    """Redis's bind: loopback always (the role's own checks, a co-located
    web host), and the URL's address when it is another."""
    if host in ("localhost", "127.0.0.1", "::1"):
        return "127.0.0.1 -::1"
    return f"127.0.0.1 -::1 {host}"


def redis_plan(v: Mapping[str, Any], wanted: bool) -> dict[str, Any]:
    """The push channel's Redis: where it is, and whether the role installs it
    here (bound to the URL's address). No secret: those stay out of the plan."""
    url = str(v["redis_url"])
    found = REDIS_URL.fullmatch(url)
    host = found.group(2).strip("[]") if found else ""
    port = int(found.group(3)[1:]) if found and found.group(3) else 6379
    return {
        "wanted": wanted,
        "install": wanted and bool(v["redis_install"]),
        "url": url,
        "host": host,
        "port": port,
        "bind": redis_bind(host),
        # Where the role installs Redis: another inventory host, or "" (this one).
        "on_host": v["redis_host"],
        "username": v["redis_username"],
        "ca_file": v["redis_ca_file"],
        "maxmemory_mb": v["redis_maxmemory_mb"],
        "appendfsync": v["redis_appendfsync"],
    }


def front_end(tls: bool, server_name: str, path: str) -> dict[str, Any]:
    """The main virtual host on this machine, for the readiness check."""
    return {
        "host": LOOPBACK,
        "port": HTTPS_PORT if tls else HTTP_PORT,
        "tls": bool(tls),
        "host_header": server_name or LOOPBACK,
        "path": path,
    }


def readiness(
    sidecars: Sequence[Mapping[str, Any]], v: Mapping[str, Any], internal: Mapping[str, Any]
) -> dict[str, Any]:
    """Where the readiness check (the wait_for_sidecars module) looks."""
    checks = []
    for s in sidecars:
        if s["internal"] and internal:
            front = {
                "host": internal["address"],
                "port": internal["port"],
                "tls": False,
                "host_header": internal["apache"],
                "path": s["mount"],
            }
        elif s["virtual_host"]:
            front = front_end(v["tls"], s["virtual_host"], "/")
        else:
            front = front_end(v["tls"], v["server_name"], s["mount"])
        checks.append({"name": s["name"], "listener": s["listen"], "front": front})
    return {"sidecars": checks, "app": front_end(v["tls"], v["server_name"], v["app_mount"])}


def express_args(
    v: Mapping[str, Any],
    c: Mapping[str, Any],
    sidecars: Sequence[Mapping[str, Any]],
    app: str,
    python_dir: str,
    static: Sequence[Mapping[str, Any]],
) -> list[str]:
    """mod_wsgi-express setup-server's arguments: the same application, sidecars,
    user, port and capacity as system mode (its ServerLimit x ThreadsPerChild is
    sized from --max-clients)."""
    args = [
        app,
        *("--server-root", c["express_root"]),
        *("--log-directory", c["express_logs"], "--access-log"),
        *("--working-directory", posixpath.dirname(app)),
        *(
            arg
            for name, value in app_daemon_options(v).items()
            if name != "lang"
            for arg in (f"--{name}", value)
        ),
        *("--user", v["user"], "--group", v["group"]),
        *("--port", str(HTTP_PORT)),
        *("--mount-point", v["app_mount"]),
        *("--processes", str(v["app_processes"])),
        *("--threads", str(v["app_threads"])),
        *("--server-mpm", "event"),
        *("--max-clients", str(v["_max_request_workers"])),
        *("--include-file", c["express_include"]),
        *static_express_args(static),
    ]
    if v["server_name"]:
        args += ["--server-name", v["server_name"]]
    if any(s["server_metrics"] for s in sidecars):
        args.append("--server-metrics")
    paths = [python_dir, *v["app_python_path"], *(p for s in sidecars for p in s["python_path"])]
    for path in dict.fromkeys(paths):
        args += ["--python-path", path]
    for s in sidecars:
        script = f"{c['conf_dir']}/{s['name']}.py"
        args += ["--service-script", s["name"], script, "--proxy-mount-point", s["mount"]]
        args.append(s["backend"])
    return args


def package_plan(c: Mapping[str, Any], kinds: set[str]) -> dict[str, Any]:
    """The package on the host: where it goes, and each of its files as a
    write_files entry (copied from the collection's, or removed when no
    sidecar present needs it)."""
    python_dir = f"{c['lib_dir']}/python"
    target = f"{python_dir}/{PACKAGE}"
    wanted = package_files(kinds)
    return {
        "python_dir": python_dir,
        "dir": target,
        "files": [
            {
                "dest": f"{target}/{name}",
                "src": f"{c['package_src']}/{name}",
                "state": "file" if needed else "absent",
                "mode": "0644",
                "backup": True,
            }
            for name, needed in wanted.items()
        ],
        "keep": sorted(wanted),
    }


def app_daemon_options(v: Mapping[str, Any]) -> dict[str, str]:
    """The application's WSGIDaemonProcess options beyond its size and user,
    by mod_wsgi's names: for the site's directive (system mode) and as
    mod_wsgi-express's arguments (--NAME VALUE)."""
    options = {name.replace("_", "-"): str(v[f"app_{name}"]) for name in APP_TIMEOUTS}
    if v["app_header_buffer_size"]:
        options["header-buffer-size"] = str(v["app_header_buffer_size"])
    options["lang"] = options["locale"] = str(v["app_locale"])
    return options


def app_restart(v: Mapping[str, Any], mode: Mode, sidecars: Sequence[Mapping[str, Any]]) -> dict:
    """What the handler that restarts the application alone needs
    (plugins/modules/restart_application.py): its processes' name, the
    sidecars' (never to be taken for them), and how long a graceful restart
    may take (finishing requests, ending, starting again)."""
    names = {"group": v["app_process_group"], "port": HTTP_PORT}
    timeouts = ("graceful_timeout", "shutdown_timeout", "startup_timeout")
    return {
        "display_name": mode.app_display_name.format(**names),
        "others": [mode.sidecar_display_name.format(name=s["name"]) for s in sidecars],
        "timeout": sum(v[f"app_{t}"] for t in timeouts if whole(v[f"app_{t}"], 0)) + 30,
    }


def apache_modules(v: Mapping[str, Any], base: Sequence[str]) -> list[str]:
    """The Apache modules system mode enables (mod_wsgi comes on top)."""
    modules = list(base)
    if v["tls"]:
        modules.append("ssl")
        if v["tls_redirect_http"]:
            modules.append("rewrite")
    if v["auth_users"]:
        modules += ["auth_basic", "authn_file", "authz_user"]
    return modules


def build_plan(variables: Mapping[str, Any], constants: Mapping[str, Any]) -> dict[str, Any]:
    """The role's plan from its public variables (full names) and its constants."""
    plan = Plan(variables, constants)
    v, c = plan.v, constants
    plan.check_site()
    plan.check_auth()
    sidecars = [plan.resolve(item, index) for index, item in enumerate(v["sidecars"])]
    internal = plan.internal_host(sidecars)
    front_end_ports = [HTTP_PORT]
    if v["tls"]:
        front_end_ports.append(HTTPS_PORT)
    if internal:
        front_end_ports.append(internal["port"])
    for sidecar in sidecars:
        plan.check_sidecar(f"{SIDECARS}[{sidecar['index']}]", sidecar, front_end_ports)
        plan.check_processes(f"{SIDECARS}[{sidecar['index']}]", sidecar)
    plan.check_collisions(sidecars)
    static, static_problems = static_plan(v["static_files"], v["app_mount"], sidecars, SHARED_DIRS)
    for problem in static_problems:
        plan.problem(problem)
    push = [s for s in sidecars if s["kind"] == PUSH.name]
    for sidecar in push:
        plan.check_push(f"{SIDECARS}[{sidecar['index']}]", sidecar)
    if push:
        plan.check_redis()
    plan.check_fleet(sidecars, bool(push))
    redis = redis_plan(v, bool(push))
    venv = plan.venv()
    plan.check_python(venv, sidecars)

    counts_ok = whole(v["capacity_http"], 1) and all(
        whole(s["max_clients"], 1) and whole(s["processes"], 1) for s in sidecars
    )
    mpm = mpm_sizing(v["capacity_http"] if counts_ok else 1, sidecars if counts_ok else [])
    if counts_ok:
        plan.check_sizing(mpm)
    fleet = fleet_settings(redis, c["host_name"])
    # With a built-in dashboard, the directory of the counters its endpoint adds up.
    dashboard = any(s["kind"] == METRICS.name for s in sidecars)
    metrics_dir = c["metrics_dir"] if dashboard else ""
    # The directory the built-in sidecars share: the counters above, and the
    # client counts of sidecars of several processes.
    shared_dir = c["metrics_dir"] if metrics_dir or any(shared_count(s) for s in sidecars) else ""
    # From checked fields only: a problem already stops the run.
    routes = websocket_routes(sidecars) if counts_ok and not plan.problems else []
    sidecars = [
        s.with_values(
            pool=mpm["pools"].get(s.name, 1),
            settings=settings(s, redis, fleet, routes, metrics_dir, c["metrics_dir"]),
        )
        for s in sidecars
    ]
    push = [s for s in sidecars if s.kind == PUSH.name]

    app_file = v["app_script"] or f"{c['lib_dir']}/demo_app.wsgi"
    # With a push channel, the application imports its publisher from the package.
    package = package_plan(c, {s["kind"] for s in sidecars})
    app_python_path = [*v["app_python_path"], *([package["python_dir"]] if push else [])]
    mode = plan.mode
    unix = [s for s in sidecars if s["listener"] == "unix"]
    return {
        "problems": plan.problems,
        "mode": mode.name,
        "other_mode": mode.other,
        # Dicts from here: what Ansible's templates and tasks read.
        "sidecars": [s.as_dict() for s in sidecars],
        "unix_sidecars": [s.as_dict() for s in unix],
        "push_sidecars": [s.as_dict() for s in push],
        "shared_dir": shared_dir,
        "redis": redis,
        "app_python_path": app_python_path,
        # The interpreter the application runs on, whose site-packages get a
        # .pth naming the package with a push channel: manage.py, management
        # commands and workers import the publisher as the daemon does.
        "app_python": f"{venv}/bin/python" if venv else DEBIAN_PYTHON,
        "publisher_importable": bool(push),
        "app_restart": app_restart(v, mode, sidecars),
        "package": package,
        "internal_sidecars": [s.as_dict() for s in sidecars if s.internal],
        "internal": internal,
        "mpm": mpm,
        "venv": venv,
        "app_file": app_file,
        "conf_files": [
            f"{s['name']}{ext}" for s in sidecars for ext in (".json", ".py", ".secret")
        ],
        "pip_environment": {
            **({"PIP_INDEX_URL": v["pip_index_url"]} if v["pip_index_url"] else {}),
            **({"PIP_CERT": v["pip_ca_bundle"]} if v["pip_ca_bundle"] else {}),
        },
        "apache_modules": apache_modules(v, c["apache_modules"]),
        "app_daemon_options": app_daemon_options(v),
        "static_files": static,
        "express_args": express_args(
            {**v, "_max_request_workers": mpm["max_request_workers"]},
            c,
            sidecars,
            app_file,
            package["python_dir"],
            static,
        ),
        "config_test_command": mode.config_test.format(**c),
        "error_log": mode.error_log.format(**c),
        "front_end_service": c[mode.service],
        "other_service": c[MODES[mode.other].service],
        "other_unit": c[MODES[mode.other].unit],
        "readiness": readiness(sidecars, v, internal),
        # Only a plan without problems is used, and only its sidecars are whole.
        "files": {} if plan.problems else sidecar_files(sidecars, v, c),
        "host_checks": {}
        if plan.problems
        else what_to_look_at(
            v,
            c,
            sidecars,
            internal,
            venv,
            static,
            mpm["open_files"],
            mpm["max_request_workers"],
        ),
    }
