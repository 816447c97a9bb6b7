"""The fleet's one Redis, which the role installed on the Redis host from
the web hosts (mod_wsgi_ws_sidecar_redis_host): bound to loopback and the
host's address on the scenario's network, Debian's default user off, the
push channel's user limited to streams on its own keys, the settings file
without the password, append-only persistence on; a memory limit that
evicts nothing (full, publishing fails saying so); a channel's stream
expiring a day after its last message; and a Redis that could not start
in a container named with the reason."""

import time

from conftest import run_playbook, scenario_hosts, stage_scripts
from push_tests import REDIS_PASSWORD, REFUSED_PUBLISH, push_probe, redis_cli

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
    assert "maxmemory 256mb\nmaxmemory-policy noeviction" in settings.content_string
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


KEY = "mod_wsgi_ws_sidecar:push:channel:demo.expiring"
# The moment of the last PEXPIREAT of a key in the append-only files.
LAST_EXPIRY = (
    "import glob, sys\n"
    "lines = b''.join(open(p, 'rb').read() for p in sorted(glob.glob("
    "'/var/lib/redis/appendonlydir/*.incr.aof'))).split(b'\\r\\n')\n"
    "found = [lines[i + 4] for i, line in enumerate(lines)"
    " if line == b'PEXPIREAT' and lines[i + 2] == sys.argv[1].encode()]\n"
    "print(found[-1].decode())\n"
)


def web_host():
    return next(h for h in scenario_hosts() if h.backend.get_hostname().endswith("12"))


def test_a_channel_expires_a_day_after_its_last_message(host):
    """The append-only file holds each EXPIRE as the moment it falls (PEXPIREAT)."""
    push_probe(web_host(), "publish", "demo.expiring", "x")
    published = time.time()
    expires_at = int(host.check_output("python3 -c %s %s", LAST_EXPIRY, KEY)) / 1000
    assert abs(expires_at - (published + 86400)) < 60, (expires_at, published)


def test_a_full_redis_refuses_publishing_with_a_clear_error(host):
    include = "/etc/redis/mod_wsgi_ws_sidecar.conf"
    web = web_host()
    stage_scripts(web, "push_probe.py")
    lowered = host.run(
        f"cp {include} {include}.keep && sed -i 's/^maxmemory .*/maxmemory 1/' {include}"
        " && systemctl restart redis-server"
    )
    assert lowered.rc == 0, lowered.stderr
    try:
        answer = web.run(
            "python3 -c %s",
            REFUSED_PUBLISH,
        )
    finally:
        restored = host.run(f"mv {include}.keep {include} && systemctl restart redis-server")
        assert restored.rc == 0, restored.stderr
        wait_until_push_is_live()
    assert answer.stdout.startswith("503 cannot publish to push channel 'demo'"), answer.stdout
    assert "is full (its maxmemory); it evicts no history" in answer.stdout, answer.stdout
    # With room again, publishing works.
    assert push_probe(web, "publish", "demo", "after")["positions"]


# Polls the push sidecar's page on the host's loopback until it answers 200.
PUSH_LIVE = (
    "import time, urllib.request\n"
    "while True:\n"
    "    try:\n"
    "        urllib.request.urlopen('http://127.0.0.1/push/', timeout=2)\n"
    "        break\n"
    "    except Exception:\n"
    "        time.sleep(0.2)\n"
)


def wait_until_push_is_live() -> None:
    """Both web hosts' push sidecars back on Redis (their page answers 200),
    for the tests that follow."""
    for web in (h for h in scenario_hosts() if h.backend.get_hostname().endswith(("12", "13"))):
        assert web.run("timeout 30 python3 -c %s", PUSH_LIVE).rc == 0, web.backend.get_hostname()


def test_a_redis_that_cannot_start_in_a_container_is_named_with_the_way_out(host):
    """The scenario's own drop-in (prepare.yml) set aside, Debian's unit
    cannot set up its user namespace here: the role's run names the setting
    and the drop-in, instead of systemd's bare error."""
    dropin = "/etc/systemd/system/redis-server.service.d/test-bed.conf"
    aside = host.run(
        f"systemctl stop redis-server && mv {dropin} {dropin}.aside && systemctl daemon-reload"
    )
    assert aside.rc == 0, aside.stderr
    try:
        run = run_playbook(playbook="redis_start.yml")
    finally:
        back = host.run(
            f"mv {dropin}.aside {dropin} && systemctl daemon-reload"
            " && systemctl reset-failed redis-server && systemctl start redis-server"
        )
        assert back.rc == 0, back.stderr
        wait_until_push_is_live()
    assert run.returncode != 0
    assert "asks systemd for a user namespace of its own (PrivateUsers=true)" in run.output, (
        run.output[-3000:]
    )
    assert "PrivateUsers=false" in run.output
