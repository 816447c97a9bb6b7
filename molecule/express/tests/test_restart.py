"""The handler "Restart the application" under mod_wsgi-express: it finds
the application's daemon processes by the name mod_wsgi-express gives them
((wsgi:localhost:80:0)), restarts those alone, and leaves the sidecar's
service-script process and its WebSocket running. The measurement under
load, in system mode, is molecule/push/tests/test_deploy.py."""

import json

from conftest import run_playbook

# The processes of www-data by the first word of their command line.
PROCESSES = """
import json, os, pwd
uid = pwd.getpwnam("www-data").pw_uid
found = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.stat(f"/proc/{pid}").st_uid != uid:
            continue
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            name = f.read().split(b"\\0", 1)[0].decode().rstrip()
    except OSError:
        continue
    found.setdefault(name, []).append(int(pid))
print(json.dumps(found))
"""
APP = "(wsgi:localhost:80:0)"
SIDECAR = "(wsgi:service:metrics-sidecar)"


def processes(host) -> dict[str, list[int]]:
    """The pids of the application's and the sidecar's daemon processes. The
    names are written over Apache's argv[0], so a long one shows cut."""
    found = json.loads(host.check_output("python3 -c %s", PROCESSES))
    groups = {APP: [], SIDECAR: []}
    for name, pids in found.items():
        for group in groups:
            if name.startswith("(wsgi:") and group.startswith(name):
                groups[group] += pids
    return groups


def test_the_handler_restarts_the_applications_processes_and_no_others(host, probe):
    name = host.backend.get_hostname()
    before = processes(host)
    assert before[APP] and before[SIDECAR], before
    run = run_playbook(playbook="restart.yml", limit=name)
    assert run.returncode == 0, run.messages()
    after = processes(host)
    assert after[SIDECAR] == before[SIDECAR]
    assert after[APP] and not set(after[APP]) & set(before[APP]), (before, after)
    assert probe.http("/")["status"] == 200
    assert probe.ws("/metrics/ws")["frames"]
