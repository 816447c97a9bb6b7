"""The role's plan (plugins/module_utils/plan.py): every rule on the
variables that needs no host, one case a row, and the values derived from
them. The role stops on any problem before it changes the host
(tasks/plan.yml); molecule/default/tests/test_bad_input.py proves that end
to end for a few rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.filter import plan as plan_filter
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.plan import (
    SIDECAR_DEFAULTS,
)

ROLE = Path(__file__).resolve().parents[1] / "roles/mod_wsgi_ws_sidecar"
DEFAULTS = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
ROLE_VARS = {
    **yaml.safe_load((ROLE / "vars/main.yml").read_text()),
    **yaml.safe_load((ROLE / "vars/Debian.yml").read_text()),
}


def role_constants() -> dict[str, Any]:
    """The constants tasks/plan.yml hands the plan, read from that task."""
    tasks = yaml.safe_load((ROLE / "tasks/plan.yml").read_text())
    (task,) = [t for t in tasks if "__mod_wsgi_ws_sidecar_constants" in t.get("vars", {})]
    templated = dict(task["vars"]["__mod_wsgi_ws_sidecar_constants"])
    constants: dict[str, Any] = {}
    # What a play adds: its inventory's hosts.
    assert templated.pop("inventory_hosts") == "{{ groups['all'] }}"
    constants["inventory_hosts"] = ["web1", "redis1"]
    assert templated.pop("host_name") == "{{ inventory_hostname }}"
    constants["host_name"] = "web1"
    assert templated.pop("host_cpus") == "{{ __mod_wsgi_ws_sidecar_nproc.stdout }}"
    constants["host_cpus"] = "2"  # as nproc says it on the test machines
    for key, value in templated.items():
        variable = re.fullmatch(r"\{\{ (\S+) \}\}", value)
        # ansible_managed | comment, as Ansible's default renders it.
        constants[key] = ROLE_VARS[variable.group(1)] if variable else "#\n# Ansible managed\n#"
    constants["package_src"] = constants["package_src"].replace("{{ role_path }}", str(ROLE))
    return constants


CONSTANTS = role_constants()
SIDECAR = {"name": "metrics-sidecar", "mount": "/metrics/", "port": 8765}
SECRET = "never-printed-" + "x" * 70  # 84 characters: over bcrypt's 72
PUSH = {"name": "push", "kind": "push", "mount": "/push/", "port": 8766}
PUSH_SECRETS = {"redis_password": "r" * 20 + "never-printed", "push_token_secret": SECRET}


def plan(**overrides: Any) -> dict[str, Any]:
    """The plan of the role's defaults with some variables set (short names)."""
    variables = {**DEFAULTS, **{f"mod_wsgi_ws_sidecar_{k}": v for k, v in overrides.items()}}
    return plan_filter.plan(variables, CONSTANTS)


def sidecars(*items: dict) -> dict[str, Any]:
    return {"sidecars": list(items)}


def test_the_defaults_have_no_problem() -> None:
    assert plan()["problems"] == []


# (case id, variables set, words one problem must contain). The rows of the
# former end-to-end table, and the rules added since.
CASES = [
    ("port-out-of-range", sidecars({**SIDECAR, "port": 70000}), ["sidecars[0].port", "70000"]),
    ("port-zero", sidecars({**SIDECAR, "port": 0}), ["sidecars[0].port"]),
    ("tcp-without-port", sidecars({"name": "m", "mount": "/m/"}), ["sidecars[0].port", "None"]),
    ("mount-without-slash", sidecars({**SIDECAR, "mount": "metrics/"}), ["sidecars[0].mount"]),
    ("mount-is-root", sidecars({**SIDECAR, "mount": "/"}), ["sidecars[0].mount"]),
    ("mount-double-slash", sidecars({**SIDECAR, "mount": "/a//b/"}), ["sidecars[0].mount"]),
    ("mount-climbing-out", sidecars({**SIDECAR, "mount": "/../etc/"}), ["sidecars[0].mount"]),
    ("mount-with-dot-segment", sidecars({**SIDECAR, "mount": "/./m/"}), ["sidecars[0].mount"]),
    (
        "mount-is-the-apps",
        {"app_mount": "/app", **sidecars({**SIDECAR, "mount": "/app/"})},
        ["sidecars[0].mount", "application's mount"],
    ),
    (
        "mount-and-virtual-host",
        sidecars({**SIDECAR, "virtual_host": "ws.example.com"}),
        ["sidecars[0] needs exactly one of mount"],
    ),
    (
        "neither-mount-nor-virtual-host",
        sidecars({"name": "m", "port": 8765}),
        ["sidecars[0] needs exactly one of mount"],
    ),
    (
        "bad-virtual-host",
        sidecars({"name": "m", "port": 8765, "virtual_host": "-ws"}),
        ["sidecars[0].virtual_host"],
    ),
    (
        "relative-socket",
        sidecars({**SIDECAR, "listener": "unix", "socket": "run/m.sock"}),
        ["sidecars[0].socket"],
    ),
    (
        "socket-in-a-shared-directory",
        sidecars({**SIDECAR, "listener": "unix", "socket": "/run/m.sock"}),
        ["sidecars[0].socket", "shared"],
    ),
    (
        "socket-path-too-long",
        sidecars({**SIDECAR, "listener": "unix", "socket": "/srv/" + "s" * 100 + "/m.sock"}),
        ["sidecars[0].socket", "100"],
    ),
    (
        "socket-climbing-out",
        sidecars({**SIDECAR, "listener": "unix", "socket": "/srv/ws/../m.sock"}),
        ["sidecars[0].socket"],
    ),
    (
        "two-sidecars-one-port",
        sidecars(SIDECAR, {"name": "other", "mount": "/other/", "port": 8765}),
        ["mod_wsgi_ws_sidecar_sidecars", "own port"],
    ),
    (
        "two-sidecars-one-mount",
        sidecars(SIDECAR, {"name": "other", "mount": "/metrics/", "port": 8766}),
        ["mod_wsgi_ws_sidecar_sidecars", "own mount"],
    ),
    (
        "two-sidecars-one-name",
        sidecars(SIDECAR, {**SIDECAR, "mount": "/other/", "port": 8766}),
        ["mod_wsgi_ws_sidecar_sidecars", "own name"],
    ),
    (
        "sidecar-named-as-the-app",
        sidecars({**SIDECAR, "name": "wsgi-app"}),
        ["own name", "wsgi-app"],
    ),
    (
        "two-sidecars-one-socket",
        sidecars(
            {**SIDECAR, "listener": "unix", "socket": "/srv/ws/s.sock"},
            {"name": "b", "mount": "/b/", "listener": "unix", "socket": "/srv/ws/s.sock"},
        ),
        ["own socket"],
    ),
    (
        "virtual-host-of-the-site",
        {
            "server_name": "example.com",
            **sidecars({"name": "m", "port": 8765, "virtual_host": "example.com"}),
        },
        ["own virtual_host"],
    ),
    (
        "capacity-beyond-apache",
        {"capacity_websockets": 20_000_000},
        ["mod_wsgi_ws_sidecar_capacity_websockets", "mpm_event allows"],
    ),
    ("zero-http-capacity", {"capacity_http": 0}, ["mod_wsgi_ws_sidecar_capacity_http"]),
    ("zero-app-processes", {"app_processes": 0}, ["mod_wsgi_ws_sidecar_app_processes"]),
    ("zero-app-threads", {"app_threads": 0}, ["mod_wsgi_ws_sidecar_app_threads"]),
    ("zero-ready-timeout", {"ready_timeout": 0}, ["mod_wsgi_ws_sidecar_ready_timeout"]),
    ("zero-timeout", {"timeout": 0}, ["mod_wsgi_ws_sidecar_timeout"]),
    ("bad-allow-list", {"allow_from": ["10.0.0.0/33"]}, ["allow_from", "10.0.0.0/33"]),
    ("shortened-ipv4", {"allow_from": ["10.1"]}, ["allow_from", "10.1"]),
    (
        "bad-sidecar-allow-list",
        sidecars({**SIDECAR, "allow_from": ["nowhere"]}),
        ["sidecars[0].allow_from", "nowhere"],
    ),
    (
        "password-too-long",
        {"auth_users": [{"name": "ops", "password": SECRET}]},
        ["mod_wsgi_ws_sidecar_auth_users", "ops"],
    ),
    (
        "two-users-one-name",
        {"auth_users": [{"name": "ops", "password": "a"}, {"name": "ops", "password": "b"}]},
        ["mod_wsgi_ws_sidecar_auth_users"],
    ),
    ("user-name-with-colon", {"auth_users": [{"name": "o:ps", "password": "a"}]}, ["auth_users"]),
    ("realm-with-quote", {"auth_realm": 'say "hi"'}, ["mod_wsgi_ws_sidecar_auth_realm"]),
    (
        "internal-host-on-port-80",
        {"internal_listen": "127.0.0.1:80"},
        ["mod_wsgi_ws_sidecar_internal_listen"],
    ),
    (
        "internal-host-without-port",
        {"internal_listen": "127.0.0.1"},
        ["mod_wsgi_ws_sidecar_internal_listen"],
    ),
    (
        "internal-host-ipv6-unbracketed",
        {"internal_listen": "::1:8081"},
        ["mod_wsgi_ws_sidecar_internal_listen"],
    ),
    (
        "sidecar-on-the-internal-hosts-port",
        {"internal_listen": "127.0.0.1:8081", **sidecars({**SIDECAR, "port": 8081})},
        ["mod_wsgi_ws_sidecar_internal_listen", "the sidecars' own"],
    ),
    (
        "internal-sidecar-without-internal-host",
        sidecars({**SIDECAR, "internal": True}),
        ["sidecars[0].internal", "mod_wsgi_ws_sidecar_internal_listen"],
    ),
    (
        "internal-sidecar-on-a-virtual-host",
        {
            "internal_listen": "127.0.0.1:8081",
            **sidecars({"name": "m", "port": 8765, "virtual_host": "m.example", "internal": True}),
        },
        ["sidecars[0].internal", "a mount"],
    ),
    (
        "multi-line-extra-directive",
        {"extra_directives": ["Header set X-A 1\nInclude /etc/shadow"]},
        ["mod_wsgi_ws_sidecar_extra_directives"],
    ),
    ("blank-extra-directive", {"extra_directives": ["  "]}, ["extra_directives"]),
    ("origin-without-scheme", sidecars({**SIDECAR, "origins": ["evil.example"]}), ["origins"]),
    (
        "origin-with-path",
        sidecars({**SIDECAR, "origins": ["https://a.example/x"]}),
        ["sidecars[0].origins"],
    ),
    ("app-mount-trailing-slash", {"app_mount": "/app/"}, ["app_mount"]),
    ("app-mount-relative", {"app_mount": "app"}, ["app_mount"]),
    ("app-process-group", {"app_process_group": "1app"}, ["app_process_group"]),
    ("app-script-relative", {"app_script": "srv/app.wsgi"}, ["app_script"]),
    ("app-python-path-colon", {"app_python_path": ["/srv/a:/srv/b"]}, ["app_python_path"]),
    ("server-name", {"server_name": "exa mple"}, ["mod_wsgi_ws_sidecar_server_name"]),
    ("sidecar-name", sidecars({**SIDECAR, "name": "1metrics"}), ["sidecars[0].name"]),
    (
        "sidecar-script-relative",
        sidecars({**SIDECAR, "script": "srv/echo.py"}),
        ["sidecars[0].script"],
    ),
    (
        "sidecar-python-path-relative",
        sidecars({**SIDECAR, "python_path": ["lib"]}),
        ["sidecars[0].script", "python_path"],
    ),
    ("zero-poll-interval", sidecars({**SIDECAR, "poll_interval": 0}), ["sidecars[0]", "poll"]),
    ("zero-heartbeat", sidecars({**SIDECAR, "heartbeat": 0}), ["sidecars[0]", "heartbeat"]),
    ("small-send-buffer", sidecars({**SIDECAR, "max_send_buffer": 100}), ["max_send_buffer"]),
    ("zero-max-clients", sidecars({**SIDECAR, "max_clients": 0}), ["sidecars[0].max_clients"]),
    ("zero-proxy-timeout", sidecars({**SIDECAR, "proxy_timeout": 0}), ["proxy_timeout"]),
    (
        "admits-nobody",
        sidecars({**SIDECAR, "allow_from": []}),
        ["sidecars[0] must admit someone"],
    ),
    (
        "require-rule-with-markup",
        sidecars({**SIDECAR, "require": ["all granted>"]}),
        ["sidecars[0] must admit someone", "require"],
    ),
    (
        "sidecar-on-apaches-own-port",
        sidecars({**SIDECAR, "port": 80}),
        ["sidecars[0].port", "Apache itself listens on"],
    ),
    (
        "sidecar-on-the-tls-port",
        {
            "tls": True,
            "tls_certificate": "/etc/ssl/c.pem",
            "tls_certificate_key": "/etc/ssl/c.key",
            **sidecars({**SIDECAR, "port": 443}),
        },
        ["sidecars[0].port", "Apache itself listens on", "443"],
    ),
    (
        "tls-without-certificate",
        {"tls": True, "tls_certificate_key": "/etc/ssl/c.key"},
        ["mod_wsgi_ws_sidecar_tls_certificate must be"],
    ),
    ("relative-venv", {"venv": "srv/venv"}, ["mod_wsgi_ws_sidecar_venv"]),
    ("venv-is-a-system-directory", {"venv": "/usr"}, ["mod_wsgi_ws_sidecar_venv"]),
    ("relative-venv-python", {"venv_python": "python3"}, ["mod_wsgi_ws_sidecar_venv_python"]),
    (
        "pip-option-as-requirement",
        {"venv": "/srv/venv", "python_requirements": ["--index-url=http://elsewhere.example"]},
        ["mod_wsgi_ws_sidecar_python_requirements"],
    ),
    ("bad-aiohttp-version", {"aiohttp_version": "latest"}, ["aiohttp_version"]),
    ("bad-index-url", {"pip_index_url": "ftp://x"}, ["mod_wsgi_ws_sidecar_pip_index_url"]),
    ("relative-ca-bundle", {"pip_ca_bundle": "ca.crt"}, ["mod_wsgi_ws_sidecar_pip_ca_bundle"]),
    ("pypi-mod-wsgi-without-venv", {"mod_wsgi_source": "pypi"}, ["mod_wsgi_source=pypi"]),
    (
        "express-with-distro-mod-wsgi",
        {"mode": "express", "mod_wsgi_source": "distro"},
        ["mod_wsgi_source=distro"],
    ),
    (
        "express-with-tls",
        {
            "mode": "express",
            "tls": True,
            "tls_certificate": "/etc/ssl/c.pem",
            "tls_certificate_key": "/etc/ssl/c.key",
        },
        ["mod_wsgi_ws_sidecar_mode=express", "TLS"],
    ),
    (
        "express-with-a-virtual-host",
        {"mode": "express", **sidecars({"name": "m", "port": 8765, "virtual_host": "m.example"})},
        ["mod_wsgi_ws_sidecar_mode=express", "virtual_host"],
    ),
    # The push channel.
    ("push-without-redis-password", sidecars(PUSH), ["mod_wsgi_ws_sidecar_redis_password"]),
    ("push-without-token-secret", sidecars(PUSH), ["mod_wsgi_ws_sidecar_push_token_secret"]),
    (
        "push-short-redis-password",
        {**PUSH_SECRETS, "redis_password": "short", **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_password", "16"],
    ),
    (
        "push-token-secret-with-a-space",
        {**PUSH_SECRETS, "push_token_secret": "a b" * 20, **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_push_token_secret", "32"],
    ),
    (
        "push-with-a-script",
        {**PUSH_SECRETS, **sidecars({**PUSH, "script": "/srv/s.py"})},
        ["sidecars[0].kind push", "leave script empty"],
    ),
    (
        "push-bad-public-channel",
        {**PUSH_SECRETS, **sidecars({**PUSH, "public_channels": ["a b"]})},
        ["sidecars[0].public_channels", "a b"],
    ),
    (
        "push-history-zero",
        {**PUSH_SECRETS, **sidecars({**PUSH, "history": 0})},
        ["sidecars[0].history", "got 0"],
    ),
    (
        "push-max-channels-too-many",
        {**PUSH_SECRETS, **sidecars({**PUSH, "max_channels": 1001})},
        ["sidecars[0].max_channels", "1 to 1000", "got 1001"],
    ),
    (
        "push-channel-ttl-too-short",
        {**PUSH_SECRETS, **sidecars({**PUSH, "channel_ttl": 5})},
        ["sidecars[0].channel_ttl", "60 or more", "got 5"],
    ),
    (
        "redis-maxmemory-too-small",
        {**PUSH_SECRETS, "redis_maxmemory_mb": 1, **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_maxmemory_mb", "got 1"],
    ),
    (
        "push-max-replay-zero",
        {**PUSH_SECRETS, **sidecars({**PUSH, "max_replay": 0})},
        ["sidecars[0].max_replay", "got 0"],
    ),
    (
        "fleet-not-a-bool",
        {**PUSH_SECRETS, **sidecars({**SIDECAR, "fleet": "yes"}, PUSH)},
        ["sidecars[0].fleet", "true or false", "yes"],
    ),
    (
        "fleet-on-a-push-sidecar",
        {**PUSH_SECRETS, **sidecars({**PUSH, "fleet": True})},
        ["sidecars[0].fleet", "built-in dashboard", "kind push"],
    ),
    (
        "fleet-without-a-push-sidecar",
        sidecars({**SIDECAR, "fleet": True}),
        ["sidecars[0].fleet", "push channel's Redis", "kind: push"],
    ),
    (
        "show-query-strings-not-a-bool",
        sidecars({**SIDECAR, "show_query_strings": "no"}),
        ["sidecars[0].show_query_strings", "true or false", "no"],
    ),
    (
        "show-query-strings-on-a-push-sidecar",
        {**PUSH_SECRETS, **sidecars({**PUSH, "show_query_strings": True})},
        ["sidecars[0].show_query_strings", "built-in dashboard", "kind push"],
    ),
    (
        "push-redis-url-not-redis",
        {**PUSH_SECRETS, "redis_url": "http://127.0.0.1:6379", **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_url", "http://127.0.0.1:6379"],
    ),
    (
        "push-redis-url-with-a-password",
        {**PUSH_SECRETS, "redis_url": "redis://u:pw@127.0.0.1:6379/0", **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_url must not carry"],
    ),
    (
        "push-installed-redis-with-tls",
        {**PUSH_SECRETS, "redis_url": "rediss://127.0.0.1:6380/0", **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_install sets up Redis without TLS"],
    ),
    (
        "push-installed-redis-bound-to-a-name",
        {**PUSH_SECRETS, "redis_url": "redis://redis.example:6379/0", **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_install binds Redis", "redis.example"],
    ),
    (
        "push-redis-host-not-in-the-inventory",
        {**PUSH_SECRETS, "redis_host": "nowhere", **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_host", "nowhere"],
    ),
    (
        "push-redis-user-default",
        {**PUSH_SECRETS, "redis_username": "default", **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_username", '"default"'],
    ),
    (
        "push-relative-ca-file",
        {**PUSH_SECRETS, "redis_ca_file": "ca.pem", **sidecars(PUSH)},
        ["mod_wsgi_ws_sidecar_redis_ca_file", "ca.pem"],
    ),
    ("zero-processes", sidecars({**SIDECAR, "processes": 0}), ["sidecars[0].processes", "0"]),
    ("too-many-processes", sidecars({**SIDECAR, "processes": 33}), ["sidecars[0].processes"]),
    (
        "processes-of-a-script",
        sidecars({**SIDECAR, "script": "/srv/echo.py", "processes": 2}),
        ["sidecars[0].processes", "built-in sidecars", "/srv/echo.py"],
    ),
    (
        "processes-on-a-unix-socket",
        sidecars({**SIDECAR, "listener": "unix", "processes": 2}),
        ["sidecars[0].processes", 'listener "tcp"', "SO_REUSEPORT"],
    ),
    (
        "processes-in-express-mode",
        {"mode": "express", **sidecars({**SIDECAR, "processes": 2})},
        ["sidecars[0].processes", "mod_wsgi_ws_sidecar_mode=system"],
    ),
]


@pytest.mark.parametrize(("overrides", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_variable_is_a_problem_naming_it(overrides: dict, words: list[str]) -> None:
    problems = plan(**overrides)["problems"]
    assert any(all(word in p for word in words) for p in problems), problems
    assert all(SECRET not in p for p in problems)


def test_every_problem_is_found_at_once() -> None:
    problems = plan(app_processes=0, **sidecars({**SIDECAR, "port": 70000, "name": "1m"}))[
        "problems"
    ]
    assert len(problems) == 3, problems


def test_a_sidecar_gets_the_defaults_of_the_spec() -> None:
    given = {"name": "m", "mount": "/m/", "port": 9000}
    (sidecar,) = plan(**sidecars(given))["sidecars"]
    derived = ("kind", "server_metrics", "max_clients", "allow_from", "socket", "processes")
    for field, default in SIDECAR_DEFAULTS.items():
        if field not in given and field not in derived:
            assert sidecar[field] == default, field


def test_derived_values_of_a_tcp_dashboard() -> None:
    result = plan()
    (sidecar,) = result["sidecars"]
    assert sidecar["backend"] == sidecar["reverse_backend"] == "http://127.0.0.1:8765/"
    assert sidecar["builtin"] is True and sidecar["server_metrics"] is True
    assert sidecar["max_clients"] == 500 and sidecar["allow_from"] == ["127.0.0.1", "::1"]
    assert (
        sidecar["prefix"] == "/metrics"
        and sidecar["pool"] == result["mpm"]["pools"]["metrics-sidecar"]
    )
    assert sidecar["settings"] == {
        "name": "metrics-sidecar",
        "listen": {"host": "127.0.0.1", "port": 8765},
        "max_clients": 500,
        "origins": [],
        "poll_interval": 1.0,
        "heartbeat": 30.0,
        "send_timeout": 1.0,
        "max_send_buffer": 262144,
        "sidecars": [{"name": "metrics-sidecar", "max_clients": 500, "path": "/metrics/ws"}],
        "show_query_strings": False,
        "metrics_dir": "/run/mod_wsgi_ws_sidecar_metrics",
    }
    assert result["unix_sidecars"] == []
    assert result["conf_files"] == [
        "metrics-sidecar.json",
        "metrics-sidecar.py",
        "metrics-sidecar.secret",
    ]
    assert result["app_file"] == "/usr/local/lib/mod_wsgi_ws_sidecar/demo_app.wsgi"
    assert result["apache_modules"] == ["proxy", "proxy_http", "headers", "authz_host"]
    assert result["mode"] == "system" and result["other_mode"] == "express"
    assert result["config_test_command"] == "apache2ctl -t"
    assert result["front_end_service"] == "apache2"


def test_a_unix_user_sidecar() -> None:
    result = plan(
        **sidecars(
            SIDECAR,
            {"name": "echo", "mount": "/echo/", "listener": "unix", "script": "/srv/echo.py"},
        )
    )
    echo = result["sidecars"][1]
    socket = "/run/mod_wsgi_ws_sidecar/echo/sidecar.sock"
    assert echo["socket"] == socket and echo["own_socket_dir"] is True
    assert echo["backend"] == f"unix:{socket}|http://localhost/"
    assert echo["reverse_backend"] == "http://localhost/"
    assert echo["builtin"] is False and echo["server_metrics"] is False
    assert echo["settings"] == {
        "name": "echo",
        "listen": {"path": socket},
        "max_clients": 500,
        "origins": [],
        "prefix": "/echo",
    }
    assert [d["dest"] for d in result["files"]["socket_dirs"]] == ["/run/mod_wsgi_ws_sidecar/echo"]
    assert [s["name"] for s in result["unix_sidecars"]] == ["echo"]


def test_a_socket_elsewhere_is_not_the_roles_own_directory() -> None:
    (sidecar,) = plan(**sidecars({**SIDECAR, "listener": "unix", "socket": "/srv/ws/m.sock"}))[
        "sidecars"
    ]
    assert sidecar["socket_dir"] == "/srv/ws" and sidecar["own_socket_dir"] is False


def test_tls_auth_and_the_internal_host() -> None:
    result = plan(
        tls=True,
        tls_certificate="/etc/ssl/c.pem",
        tls_certificate_key="/etc/ssl/c.key",
        auth_users=[{"name": "ops", "password": "pw"}],
        internal_listen="[::1]:8081",
        server_name="example.com",
        **sidecars(
            {**SIDECAR, "internal": True},
            {"name": "vhost", "port": 8770, "virtual_host": "ws.example.com"},
        ),
    )
    assert result["problems"] == []
    assert result["internal"] == {"address": "::1", "port": 8081, "apache": "[::1]:8081"}
    assert result["apache_modules"][-5:] == [
        "ssl",
        "rewrite",
        "auth_basic",
        "authn_file",
        "authz_user",
    ]
    internal, vhost = result["readiness"]["sidecars"]
    assert internal["front"] == {
        "host": "::1",
        "port": 8081,
        "tls": False,
        "host_header": "[::1]:8081",
        "path": "/metrics/",
    }
    assert vhost["front"] == {
        "host": "127.0.0.1",
        "port": 443,
        "tls": True,
        "host_header": "ws.example.com",
        "path": "/",
    }
    assert result["readiness"]["app"]["host_header"] == "example.com"
    assert [s["name"] for s in result["internal_sidecars"]] == ["metrics-sidecar"]


def test_express_mode() -> None:
    result = plan(
        mode="express",
        app_python_path=["/srv/app"],
        server_name="example.com",
        **sidecars(SIDECAR, {"name": "echo", "mount": "/echo/", "port": 8770, "script": "/e.py"}),
    )
    assert result["problems"] == []
    assert result["venv"] == "/opt/mod_wsgi_ws_sidecar/venv"
    assert result["other_mode"] == "system" and result["other_service"] == "apache2"
    args = result["express_args"]
    assert args[0] == result["app_file"]
    assert args[args.index("--max-clients") + 1] == str(result["mpm"]["max_request_workers"])
    assert args[args.index("--server-name") + 1] == "example.com"
    assert "--server-metrics" in args
    paths = [args[i + 1] for i, a in enumerate(args) if a == "--python-path"]
    assert paths == ["/usr/local/lib/mod_wsgi_ws_sidecar/python", "/srv/app"]
    scripts = [args[i + 1 : i + 6] for i, a in enumerate(args) if a == "--service-script"]
    assert scripts == [
        [
            "metrics-sidecar",
            "/etc/mod_wsgi_ws_sidecar/metrics-sidecar.py",
            "--proxy-mount-point",
            "/metrics/",
            "http://127.0.0.1:8765/",
        ],
        [
            "echo",
            "/etc/mod_wsgi_ws_sidecar/echo.py",
            "--proxy-mount-point",
            "/echo/",
            "http://127.0.0.1:8770/",
        ],
    ]
    assert result["config_test_command"].endswith("/express/apachectl configtest")
    assert all(isinstance(a, str) for a in args)


def test_pip_settings_become_environment() -> None:
    result = plan(pip_index_url="https://pypi.example/simple", pip_ca_bundle="/etc/ssl/ca.crt")
    assert result["pip_environment"] == {
        "PIP_INDEX_URL": "https://pypi.example/simple",
        "PIP_CERT": "/etc/ssl/ca.crt",
    }
    assert plan()["pip_environment"] == {}


def test_a_unix_sidecar_is_checked_on_its_socket() -> None:
    (check,) = plan(**sidecars({**SIDECAR, "listener": "unix"}))["readiness"]["sidecars"]
    assert check == {
        "name": "metrics-sidecar",
        "listener": {"path": "/run/mod_wsgi_ws_sidecar/metrics-sidecar/sidecar.sock"},
        "front": {
            "host": "127.0.0.1",
            "port": 80,
            "tls": False,
            "host_header": "127.0.0.1",
            "path": "/metrics/",
        },
    }


def test_the_filter_is_registered_in_the_collection() -> None:
    # Called as mod_wsgi_ws_sidecar.apache.plan by tasks/plan.yml.
    assert plan_filter.FilterModule().filters() == {"plan": plan_filter.plan}


def test_a_push_sidecar_without_problems_and_what_it_derives() -> None:
    derived = plan(**PUSH_SECRETS, **sidecars(SIDECAR, {**PUSH, "public_channels": ["news"]}))
    assert derived["problems"] == []
    push = derived["sidecars"][1]
    assert (push["kind"], push["builtin"], push["server_metrics"]) == ("push", True, False)
    assert derived["push_sidecars"] == [push]
    assert push["settings"] == {
        "name": "push",
        "kind": "push",
        "listen": {"host": "127.0.0.1", "port": 8766},
        "max_clients": 500,
        "origins": [],
        "heartbeat": 30.0,
        "send_timeout": 1.0,
        "max_send_buffer": 262144,
        "public_channels": ["news"],
        "history": 1000,
        "max_channels": 32,
        "max_replay": 1000,
        "channel_ttl": 86400,
        "redis": {
            "url": "redis://127.0.0.1:6379/0",
            "username": "mod_wsgi_ws_sidecar",
            "ca_file": "",
        },  # Its counters reach the dashboard's endpoint through this directory.
        "metrics_dir": "/run/mod_wsgi_ws_sidecar_metrics",
    }
    # Without a built-in dashboard, nobody would read them.
    alone = plan(**PUSH_SECRETS, **sidecars(PUSH))
    assert "metrics_dir" not in alone["sidecars"][0]["settings"]
    assert derived["redis"] == {
        "wanted": True,
        "install": True,
        "url": "redis://127.0.0.1:6379/0",
        "host": "127.0.0.1",
        "port": 6379,
        "bind": "127.0.0.1 -::1",
        "on_host": "",
        "username": "mod_wsgi_ws_sidecar",
        "ca_file": "",
        "maxmemory_mb": 256,
        "appendfsync": "everysec",
    }
    # The application imports the publisher from the role's package, alone in its directory.
    assert derived["app_python_path"] == [f"{CONSTANTS['lib_dir']}/python"]
    assert derived["package"]["dir"] == f"{CONSTANTS['lib_dir']}/python/mod_wsgi_ws_sidecar"
    (script,) = [f for f in derived["files"]["scripts"] if f["dest"].endswith("/push.py")]
    assert "from mod_wsgi_ws_sidecar import push_sidecar\n" in script["content"]
    assert "push_sidecar.run_service(" in script["content"]
    # Neither secret is anywhere in the plan, which -vvv prints.
    for secret in PUSH_SECRETS.values():
        assert secret not in repr(derived)


def test_a_fleets_dashboard_is_told_this_host_its_routes_and_the_cap() -> None:
    echo = {"name": "echo", "virtual_host": "ws.example", "port": 8767, "max_clients": 20}
    own = {"name": "own", "script": "/srv/own.py", "mount": "/own/", "port": 8768}
    derived = plan(
        **PUSH_SECRETS,
        redis_url="redis://10.0.0.5:6379/0",
        **sidecars({**SIDECAR, "fleet": True}, PUSH, echo, own),
    )
    assert derived["problems"] == []
    metrics, *others = (s["settings"] for s in derived["sidecars"])
    assert metrics["fleet"] == {
        "host": "web1",
        "redis": {
            "url": "redis://10.0.0.5:6379/0",
            "username": "mod_wsgi_ws_sidecar",
            "ca_file": "",
        },
    }
    # Its WebSockets and every other sidecar's, counted on their routes against their caps.
    assert [
        (r["name"], r["max_clients"], r.get("path"), r.get("host")) for r in metrics["sidecars"]
    ] == [
        ("metrics-sidecar", 500, "/metrics/ws", None),
        ("push", 500, "/push/ws", None),
        ("echo", 20, None, "ws.example"),
        ("own", 500, "/own/", None),
    ]
    assert not any("fleet" in other for other in others)
    # Its Redis password is added on the host, like the push sidecar's.
    (entry,) = [
        f for f in derived["files"]["private"] if f["dest"].endswith("/metrics-sidecar.json")
    ]
    assert entry["fleet_secret"] is True
    for secret in PUSH_SECRETS.values():
        assert secret not in repr(derived)


def test_without_a_push_sidecar_nothing_of_it_is_wanted() -> None:
    derived = plan()
    assert derived["push_sidecars"] == [] and derived["app_python_path"] == []
    assert (derived["redis"]["wanted"], derived["redis"]["install"]) == (False, False)
    # Its variables are not checked: the defaults leave both secrets empty.
    assert derived["problems"] == []


def test_an_existing_redis_is_not_installed() -> None:
    derived = plan(
        **PUSH_SECRETS,
        redis_install=False,
        redis_url="rediss://redis.example:6380/2",
        **sidecars(PUSH),
    )
    assert derived["problems"] == []
    assert derived["redis"]["install"] is False
    assert (derived["redis"]["host"], derived["redis"]["port"]) == ("redis.example", 6380)


def test_redis_on_another_host_is_bound_to_its_address_beside_loopback() -> None:
    derived = plan(
        **PUSH_SECRETS,
        redis_host="redis1",
        redis_url="redis://10.0.0.7:6379/0",
        **sidecars(PUSH),
    )
    assert derived["problems"] == []
    redis = derived["redis"]
    assert (redis["on_host"], redis["bind"], redis["install"]) == (
        "redis1",
        "127.0.0.1 -::1 10.0.0.7",
        True,
    )


@pytest.mark.parametrize(
    ("item", "processes"),
    [
        ({}, 1),  # 500 clients: one process is plenty
        ({"max_clients": 2501}, 2),
        ({"max_clients": 20000}, 2),  # at most the host's 2 processors
        ({"max_clients": 20000, "listener": "unix"}, 1),
        ({"max_clients": 20000, "script": "/srv/echo.py"}, 1),
        ({"max_clients": 20000, "processes": 1}, 1),
        ({"max_clients": 100, "processes": 4}, 4),  # asked for: more than the cores
    ],
)
def test_the_processes_of_a_sidecar_follow_its_clients_and_the_cores(
    item: dict, processes: int
) -> None:
    (sidecar,) = plan(**sidecars({**SIDECAR, **item}))["sidecars"]
    assert sidecar["processes"] == processes


def test_express_mode_runs_one_process_of_each_sidecar() -> None:
    (sidecar,) = plan(mode="express", **sidecars({**SIDECAR, "max_clients": 20000}))["sidecars"]
    assert sidecar["processes"] == 1


def test_a_sidecar_of_several_processes_shares_its_count_of_clients() -> None:
    result = plan(capacity_websockets=20000)
    assert result["problems"] == []
    (sidecar,) = result["sidecars"]
    assert sidecar["processes"] == 2
    assert sidecar["settings"]["processes"] == 2
    assert sidecar["settings"]["clients_file"] == (
        "/run/mod_wsgi_ws_sidecar_metrics/metrics-sidecar.clients"
    )
    assert sidecar["settings"]["max_clients"] == 20000  # the cap of the sidecar as a whole
    # Each process holds its share (and a margin): 20,000 clients fit these hosts' 20,000 files.
    assert result["mpm"]["open_files"] == 11000 + 1024
    assert result["host_checks"]["open_files"] == 11000 + 1024


def test_a_push_sidecar_alone_of_several_processes_has_a_shared_directory() -> None:
    alone = plan(**PUSH_SECRETS, **sidecars({**PUSH, "processes": 2}))
    assert alone["problems"] == []
    assert alone["shared_dir"] == "/run/mod_wsgi_ws_sidecar_metrics"
    settings = alone["sidecars"][0]["settings"]
    assert "metrics_dir" not in settings
    assert settings["clients_file"] == "/run/mod_wsgi_ws_sidecar_metrics/push.clients"


def test_the_plan_ansible_reads_holds_plain_values_only() -> None:
    """Records stay inside the plan (sidecar_record.Sidecar); what the filter
    returns is dicts, lists and JSON's scalars, the same on every ansible-core."""
    echo = {"name": "echo", "mount": "/echo/", "listener": "unix", "script": "/srv/echo.py"}
    derived = plan(**PUSH_SECRETS, **sidecars(SIDECAR, PUSH, echo))
    assert derived["problems"] == []

    def walk(value: Any, at: str) -> None:
        assert type(value) in (dict, list, str, int, float, bool, type(None)), (at, type(value))
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{at}.{key}")
        elif isinstance(value, list):
            for n, item in enumerate(value):
                walk(item, f"{at}[{n}]")

    walk(derived, "plan")


def test_a_sidecar_field_the_role_does_not_know_is_a_problem() -> None:
    derived = plan(**sidecars({**SIDECAR, "mountt": "/x/"}))
    assert derived["problems"] == [
        "mod_wsgi_ws_sidecar_sidecars[0] has fields the role does not know: ['mountt']."
    ]


def test_a_mode_the_role_does_not_have_is_a_problem() -> None:
    assert plan(mode="nginx")["problems"] == [
        'mod_wsgi_ws_sidecar_mode must be one of system, express; got "nginx".'
    ]


def test_the_dashboards_old_source_variable_is_refused_saying_why() -> None:
    (problem,) = plan(script_src="/srv/my/sidecar.py")["problems"]
    assert problem.startswith("mod_wsgi_ws_sidecar_script_src is no longer read")


def test_a_derived_field_given_in_an_item_is_a_problem_not_taken() -> None:
    derived = plan(**sidecars({**SIDECAR, "pool": 99}))
    assert derived["problems"] == [
        "mod_wsgi_ws_sidecar_sidecars[0] has fields the role does not know: ['pool']."
    ]
    assert derived["sidecars"][0]["pool"] != 99


def test_the_applications_daemon_gets_mod_wsgi_express_settings_in_both_modes() -> None:
    system = plan()
    assert system["app_daemon_options"] == {
        "request-timeout": "60",
        "queue-timeout": "45",
        "socket-timeout": "60",
        "connect-timeout": "15",
        "graceful-timeout": "15",
        "startup-timeout": "15",
        "shutdown-timeout": "5",
        "lang": "C.UTF-8",
        "locale": "C.UTF-8",
    }
    tuned = plan(mode="express", app_request_timeout=0, app_header_buffer_size=65536)
    assert tuned["problems"] == []
    args = tuned["express_args"]
    assert args[args.index("--request-timeout") + 1] == "0"
    assert args[args.index("--header-buffer-size") + 1] == "65536"
    assert args[args.index("--locale") + 1] == "C.UTF-8" and "--lang" not in args


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"app_queue_timeout": -1}, "mod_wsgi_ws_sidecar_app_queue_timeout must be a whole"),
        ({"app_shutdown_timeout": "5"}, "mod_wsgi_ws_sidecar_app_shutdown_timeout must be"),
        ({"app_header_buffer_size": 4096}, "at least 8192; got 4096."),
        ({"app_locale": "C.UTF-8 x"}, 'like C.UTF-8 or en_US.UTF-8; got "C.UTF-8 x".'),
    ],
)
def test_the_applications_daemon_settings_are_checked(overrides: dict, says: str) -> None:
    (problem,) = plan(**overrides)["problems"]
    assert says in problem


def test_the_publisher_goes_to_the_python_the_application_runs_on() -> None:
    with_push = {"sidecars": [PUSH], **PUSH_SECRETS}
    assert plan()["publisher_importable"] is False
    system = plan(**with_push)
    assert (system["app_python"], system["publisher_importable"]) == ("/usr/bin/python3", True)
    assert plan(venv="/srv/site/venv", **with_push)["app_python"] == "/srv/site/venv/bin/python"
    express = plan(mode="express", **with_push)
    assert express["app_python"] == CONSTANTS["default_venv"] + "/bin/python"
