"""A user's sidecar that cannot serve: the run fails naming it, or the role
repairs what it can, so that a run that ends well means a serving site.

- a script that raises at every start: the run fails, naming the sidecar,
  with its traceback from Apache's error log;
- a script that fails once, then serves: restarted (its error logged once)
  and serving when the run ends;
- a regular file left at a default socket path: cleared, and the sidecar
  serves; one at a socket path of the user's: refused before any change.

The runs happen once for all hosts (module fixtures); the first three
stories share two runs, the last of them the example's own converge, which
puts the scenario back.
"""

import re

import pytest
from conftest import Probe, converge, put_file, run_playbook, scenario_hosts

METRICS = {"name": "metrics-sidecar", "mount": "/metrics/", "port": 8765}
ECHO = {
    "name": "echo",
    "script": "/srv/echo-sidecar/echo_sidecar.py",
    "mount": "/ws/",
    "listener": "unix",
    "allow_from": ["all"],
}
BROKEN = "raise RuntimeError('broken sidecar, on purpose')\n"
# Fails at its first start (leaving a mark), then serves HTTP on its port.
FLAKY = """\
import asyncio, json, pathlib
import mod_wsgi

mark = pathlib.Path("/srv/flaky/failed-once")
if not mark.exists():
    mark.write_text("1")
    raise RuntimeError("flaky sidecar, first start fails on purpose")
name = mod_wsgi.process_group.removeprefix("service:")
listen = json.loads(pathlib.Path(f"/etc/mod_wsgi_ws_sidecar/{name}.json").read_text())["listen"]


async def answer(reader, writer):
    await reader.readuntil(b"\\r\\n\\r\\n")
    writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nflaky")
    await writer.drain()
    writer.close()


async def serve():
    server = await asyncio.start_server(answer, listen["host"], listen["port"])
    async with server:
        await server.serve_forever()


asyncio.run(serve())
"""
ECHO_SOCKET = "/run/mod_wsgi_ws_sidecar/echo/sidecar.sock"


def sidecars(*extra: dict, **variables) -> dict:
    return {"mod_wsgi_ws_sidecar_sidecars": [METRICS, ECHO, *extra], **variables}


BROKEN_SIDECAR = {
    "name": "broken",
    "script": "/srv/broken/broken.py",
    "mount": "/broken/",
    "port": 8790,
}
FLAKY_SIDECAR = {"name": "flaky", "script": "/srv/flaky/flaky.py", "mount": "/flaky/", "port": 8791}


def flaky_seen(host) -> dict:
    return {
        "answer": Probe(host).http("/flaky/"),
        "logged": int(
            host.run(
                "grep -c 'RuntimeError: flaky sidecar, first start' /var/log/apache2/error.log"
            ).stdout
            or 0
        ),
    }


@pytest.fixture(scope="module")
def stories() -> dict:
    """Three stories in two runs, once for all hosts: a run with a broken and
    a flaky sidecar beside the example's; then, with Apache stopped and a
    regular file at the echo sidecar's default socket path, the example's own
    converge, which also puts the scenario back."""
    hosts = scenario_hosts()
    for host in hosts:
        put_file(host, "/srv/broken/broken.py", BROKEN)
        put_file(host, "/srv/flaky/flaky.py", FLAKY)
        assert host.run("rm -f /srv/flaky/failed-once && chown www-data /srv/flaky").rc == 0
    failing = run_playbook(
        sidecars(BROKEN_SIDECAR, FLAKY_SIDECAR, mod_wsgi_ws_sidecar_ready_timeout=10)
    )
    flaky = {host.backend.host: flaky_seen(host) for host in hosts}
    for host in hosts:
        assert host.run("systemctl stop apache2").rc == 0
        assert host.run(f"rm -f {ECHO_SOCKET} && echo stale > {ECHO_SOCKET}").rc == 0
    converge()
    leftover = {
        host.backend.host: {
            "socket": host.file(ECHO_SOCKET).is_socket,
            "echo": Probe(host).http("/ws/"),
        }
        for host in hosts
    }
    return {"failing": failing, "flaky": flaky, "leftover": leftover}


def test_a_sidecar_that_never_serves_fails_the_run_naming_it(stories):
    # Named alone (the dashboard, the echo sidecar, the flaky one and the app
    # serve), with its own traceback from Apache's error log.
    run = stories["failing"]
    said = run.messages()
    assert run.returncode != 0
    assert re.search(r"Not serving after 10 s: broken: [^;]*\. Last lines of", said), said[-3000:]
    assert "RuntimeError: broken sidecar, on purpose" in said, said[-3000:]


def test_a_script_that_fails_once_is_restarted_and_serves_when_the_run_ends(stories):
    for name, seen in stories["flaky"].items():
        assert seen["answer"]["status"] == 200 and seen["answer"]["body"] == "flaky", name
        assert seen["logged"] == 1, name


def test_a_leftover_file_at_a_default_socket_path_is_cleared(stories):
    for name, seen in stories["leftover"].items():
        assert seen["socket"], name
        assert seen["echo"]["status"] == 200, (name, seen["echo"])


@pytest.fixture(scope="module")
def leftover_elsewhere() -> dict:
    hosts = scenario_hosts()
    for host in hosts:
        put_file(host, "/srv/echo-run/echo.sock", "stale")
    run = run_playbook(
        {"mod_wsgi_ws_sidecar_sidecars": [METRICS, {**ECHO, "socket": "/srv/echo-run/echo.sock"}]}
    )
    kept = {host.backend.host: host.file("/srv/echo-run/echo.sock").is_file for host in hosts}
    for host in hosts:
        host.run("rm -rf /srv/echo-run")
    return {"run": run, "kept": kept, "hosts": len(hosts)}


def test_a_leftover_file_at_a_users_socket_path_is_refused_before_any_change(leftover_elsewhere):
    run = leftover_elsewhere["run"]
    output = run.messages()
    assert run.returncode != 0
    assert "sidecars[1].socket: /srv/echo-run/echo.sock" in output, output[-3000:]
    assert "is a regular file" in output
    assert list(run.recap().values()) == [0] * leftover_elsewhere["hosts"]
    assert all(leftover_elsewhere["kept"].values())
