"""Redis on a host the role names (mod_wsgi_ws_sidecar_redis_host): the
Debian 13 web host is converged again with the Debian 12 host as its Redis
host, over the Docker network this scenario creates (molecule.yml). The role
configures Redis there, bound to that address beside loopback; what the
application publishes on the Debian 13 host reaches a subscriber on each
host, whose push sidecars now read the same Redis. Runs last, as it changes
the Debian 13 host's settings."""

import json

from conftest import run_playbook, scenario_hosts, stage_scripts
from test_push import PROBE, REDIS_PASSWORD, REDIS_USER, session_frames

CHANNEL = "demo.public.fleet"
STREAM = f"mod_wsgi_ws_sidecar:push:channel:{CHANNEL}"
OUT = "/opt/mws-test/fleet-session.json"
PUBLISH = (
    "import urllib.request, sys; print(urllib.request.urlopen("
    "'http://127.0.0.1/push-demo/publish', sys.argv[1].encode(), 10).read().decode())"
)


def start_session(host) -> None:
    """A subscriber in the background, its answer written to OUT."""
    stage_scripts(host, "push_probe.py")
    started = host.run(
        "rm -f %s; (timeout 30 python3 %s session %s --frames 2 --timeout 15 > %s.part"
        " && mv %s.part %s) >/dev/null 2>&1 &",
        OUT,
        PROBE,
        CHANNEL,
        OUT,
        OUT,
        OUT,
    )
    assert started.rc == 0, started.stderr


def session_of(host) -> list[dict]:
    done = host.run("timeout 30 sh -c 'until test -e %s; do sleep 0.2; done' && cat %s", OUT, OUT)
    assert done.rc == 0, f"no session answer on {host.backend.get_hostname()}"
    return session_frames(done.stdout)


def test_a_web_host_uses_redis_installed_on_the_host_it_names():
    redis_host, web_host = sorted(scenario_hosts(), key=lambda h: h.backend.get_hostname())
    redis_name, web_name = redis_host.backend.get_hostname(), web_host.backend.get_hostname()
    # The Redis host's address on the scenario's network, as the web host resolves it.
    address = web_host.check_output("getent ahostsv4 %s", redis_name).split()[0]
    url = f"redis://{address}:6379/0"
    run = run_playbook(
        {"mod_wsgi_ws_sidecar_redis_host": redis_name, "mod_wsgi_ws_sidecar_redis_url": url},
        limit=web_name,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    settings = redis_host.file("/etc/redis/mod_wsgi_ws_sidecar.conf").content_string
    assert f"bind 127.0.0.1 -::1 {address}" in settings
    listening = [line.split()[3] for line in redis_host.check_output("ss -Hltn").splitlines()]
    assert {f"{address}:6379", "127.0.0.1:6379"} <= set(listening), listening
    pushed = json.loads(web_host.file("/etc/mod_wsgi_ws_sidecar/push.json").content_string)
    assert pushed["redis"]["url"] == url

    for host in (redis_host, web_host):
        start_session(host)
    published = web_host.run(
        "sleep 2; python3 -c %s %s", PUBLISH, f"channel={CHANNEL}&message=across"
    )
    assert published.rc == 0, published.stderr
    position = published.stdout.strip()
    for host in (redis_host, web_host):
        frames = session_of(host)
        assert [f["type"] for f in frames] == ["subscribed", "message"], frames
        assert (frames[1]["id"], frames[1]["data"]) == (position, {"text": "across"})
    length = redis_host.check_output(
        "redis-cli --user %s --pass %s --no-auth-warning XLEN %s",
        REDIS_USER,
        REDIS_PASSWORD,
        STREAM,
    )
    assert length.strip() == "1"
