"""The fleet's one Redis, which the role installed on the Redis host from
the web hosts (mod_wsgi_ws_sidecar_redis_host): bound to loopback and the
host's address on the scenario's network, Debian's default user off, the
push channel's user limited to streams on its own keys, the settings file
without the password, append-only persistence on."""

from conftest import scenario_hosts
from test_push import REDIS_PASSWORD, redis_cli

testinfra_hosts = ["ansible://redis"]


def test_redis_listens_on_loopback_and_the_fleet_address_only(host):
    address = host.check_output("hostname -i").split()[0]
    listening = [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()]
    assert sorted(where for where in listening if where.endswith(":6379")) == sorted(
        ["127.0.0.1:6379", f"{address}:6379"]
    ), listening
    settings = host.file("/etc/redis/mod_wsgi_ws_sidecar.conf").content_string
    assert f"bind 127.0.0.1 -::1 {address}" in settings


def test_only_the_push_channels_user_may_in_and_only_to_its_streams(host):
    assert "NOAUTH" in redis_cli(host, "PING", user=False).stdout
    assert redis_cli(host, "PING").stdout.strip() == "PONG"
    for command in (["FLUSHALL"], ["CONFIG", "GET", "*"], ["KEYS", "*"], ["SET", "other", "1"]):
        assert "NOPERM" in redis_cli(host, *command).stdout, command


def test_the_settings_keep_the_password_out_and_persist_append_only(host):
    settings = host.file("/etc/redis/mod_wsgi_ws_sidecar.conf")
    assert (settings.user, settings.group, settings.mode) == ("root", "redis", 0o640)
    assert "appendonly yes" in settings.content_string
    assert REDIS_PASSWORD not in settings.content_string
    includes = host.file("/etc/redis/redis.conf").content_string.count(
        "include /etc/redis/mod_wsgi_ws_sidecar.conf"
    )
    assert includes == 1
    assert host.file("/var/lib/redis/appendonlydir").is_directory


def test_no_web_host_runs_a_redis_of_its_own(host):
    web_hosts = [h for h in scenario_hosts() if h.backend.get_hostname().endswith(("12", "13"))]
    assert len(web_hosts) == 2
    for web in web_hosts:
        assert not web.package("redis-server").is_installed, web.backend.get_hostname()
