"""A push sidecar filled past what its open-files limit leaves room for,
through Apache: every client it admitted subscribed and got what was then
published, the excess was refused at the upgrade (503), its feed from Redis
never broke, and a burst of subscribes opened no more Redis connections
than its pool allows (Redis's own count of its clients). The limit is
lowered on the running sidecar (prlimit) and put back after."""

import json

from conftest import stage_scripts
from push_tests import REDIS_PASSWORD, REDIS_USER, wait_for_file

SIDECAR = r"pgrep -f '^\(wsgi:push\) '"
# Its own user may lower its open-files limit and raise it back (in a
# container root lacks CAP_SYS_RESOURCE to do it).
AS_SIDECAR = "runuser -u www-data --"
ROOM = 150
# clients.FD_RESERVE (the package's clients.py): what the process keeps for itself.
RESERVE = 256
# push_sidecar.REDIS_POOL: the most connections its commands may open.
REDIS_POOL = 8
ERROR_LOG = "/var/log/apache2/error.log"
# Redis's count of its clients (this one included), and the most of it,
# sampled every 0.05 s for 20 s, into a file.
CLIENTS = (
    f"redis-cli --user {REDIS_USER} --pass {REDIS_PASSWORD} --no-auth-warning INFO clients"
    " | sed -n 's/^connected_clients:\\([0-9]*\\).*/\\1/p'"
)
SAMPLE = (
    f'timeout 20 bash -c "while :; do {CLIENTS}; sleep 0.05; done"'
    " | sort -n | tail -n 1 > %s.part && mv %s.part %s"
)


def test_a_push_sidecar_full_by_its_open_files_limit_refuses_the_excess_cleanly(host):
    (pid,) = host.check_output(SIDECAR).split()
    soft, hard = host.check_output(
        f"{AS_SIDECAR} prlimit --pid %s --nofile --noheadings --output SOFT,HARD", pid
    ).split()
    logged = int(host.check_output("stat -c %%s %s", ERROR_LOG))
    before = int(host.check_output(CLIENTS))
    stage_scripts(host, "push_fill.py")
    most = "/tmp/redis-clients-max"
    lowered = host.run(
        f"{AS_SIDECAR} prlimit --pid %s --nofile=%s:%s", pid, str(ROOM + RESERVE), hard
    )
    assert lowered.rc == 0, lowered.stderr
    try:
        sampling = host.run(f"rm -f {most}; ({SAMPLE % (most, most, most)}) >/dev/null 2>&1 &")
        assert sampling.rc == 0, sampling.stderr
        filled = host.run(
            "timeout 150 python3 /opt/mws-test/push_fill.py --clients 200"
            " --channel demo.public.fill"
        )
        assert filled.rc == 0, filled.stderr
    finally:
        assert host.run(f"{AS_SIDECAR} prlimit --pid %s --nofile=%s:%s", pid, soft, hard).rc == 0
    report = json.loads(filled.stdout)
    assert report["outcomes"] == {"subscribed": ROOM, "http 503": 200 - ROOM}, report
    assert report["reached"] == ROOM, report
    # The burst of subscribes, and the one publish after it.
    opened = int(wait_for_file(host, most, 30, cat=True)) - before
    assert opened <= REDIS_POOL + 1, (before, opened)
    since = host.check_output("tail -c +%s %s", str(logged + 1), ERROR_LOG)
    for sign in ("Error 24", "Too many open files", "push feed interrupted", " ERROR "):
        assert sign not in since, since[-2000:]
    assert "as many as its open-files limit allows" in since
