"""The push channel's Redis on the web host itself: bound to loopback only,
Debian's default user off, the push channel's user limited to its keys, a
memory limit that evicts nothing."""

from push_tests import REDIS_PASSWORD, redis_cli


def test_redis_listens_on_loopback_only(host):
    listening = [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()]
    redis = {where for where in listening if where.endswith(":6379")}
    # ::1 as well where the container has IPv6 (the bind's "-::1" is optional).
    assert "127.0.0.1:6379" in redis and redis <= {"127.0.0.1:6379", "[::1]:6379"}, listening


def test_only_the_push_channels_user_may_in_and_only_to_its_streams(host):
    assert "NOAUTH" in redis_cli(host, "PING", user=False).stdout
    assert redis_cli(host, "PING").stdout.strip() == "PONG"
    for command in (["FLUSHALL"], ["CONFIG", "GET", "*"], ["KEYS", "*"], ["SET", "other", "1"]):
        assert "NOPERM" in redis_cli(host, *command).stdout, command


def test_the_settings_keep_the_password_out_and_bound_the_memory(host):
    settings = host.file("/etc/redis/mod_wsgi_ws_sidecar.conf")
    assert (settings.user, settings.group, settings.mode) == ("root", "redis", 0o640)
    text = settings.content_string
    assert "appendonly yes" in text and "appendfsync everysec" in text
    assert "maxmemory 256mb\nmaxmemory-policy noeviction" in text
    assert REDIS_PASSWORD not in text
