"""The dashboard's Prometheus endpoint on a real host, read by the real tools
(Debian's, installed by prepare.yml): promtool checks what it serves, and a
Prometheus server the test starts scrapes it through Apache every second
while the test holds WebSockets, and PromQL answers with what it holds. All
of it on the container's own loopback."""

import json
import time
import urllib.parse

import pytest
from conftest import staged_probe

ENDPOINT = "/metrics/metrics"
PROMETHEUS_DIR = "/var/lib/mws-test-prometheus"
PROMETHEUS = "127.0.0.1:9091"
UNIT = "mws-test-prometheus"
HELD = 5
SCRAPE_CONFIG = f"""\
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: apache
    metrics_path: {ENDPOINT}
    static_configs:
      - targets: ["127.0.0.1:80"]
"""
# promtool's lint names apache_exporter's own units; they are kept, as they
# are what existing Grafana dashboards query.
APACHE_EXPORTER_UNITS = {
    "apache_sent_kilobytes_total": '"kilobytes"',
    "apache_cpu_time_ms_total": "abbreviated units",
}
FETCH = (
    "python3 -c 'import sys, urllib.request;"
    " sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' %s"
)


def test_the_endpoint_answers_with_prometheus_text_under_the_dashboards_rules(probe):
    answer = probe.http(ENDPOINT)
    assert answer["status"] == 200, answer
    assert answer["headers"]["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "\napache_up 1.0\n" in answer["body"]
    # The page's access rules: loopback only by default.
    assert probe.http(ENDPOINT, source="127.0.0.2")["status"] == 403


def test_promtool_finds_nothing_wrong_but_apache_exporters_own_units(host):
    checked = host.run(f"{FETCH} | promtool check metrics", f"http://127.0.0.1{ENDPOINT}")
    # 3: lint findings only; a text it cannot parse would be 1.
    assert checked.rc == 3, checked
    problems = [line for line in (checked.stdout + checked.stderr).splitlines() if line.strip()]
    # Every line promtool prints names a metric and what it finds; nothing but the units.
    assert problems, "promtool printed nothing: was its lint skipped?"
    named = {}
    for line in problems:
        metric, _, finding = line.partition(" ")
        named[metric] = finding
    assert set(named) == set(APACHE_EXPORTER_UNITS), problems
    for metric, unit in APACHE_EXPORTER_UNITS.items():
        assert unit in named[metric], problems


def query(host, promql: str) -> list:
    url = f"http://{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    answer = json.loads(host.check_output(FETCH, url))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def value(host, promql: str) -> float | None:
    result = query(host, promql)
    return float(result[0]["value"][1]) if result else None


def eventually(host, promql: str, expected: float, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (got := value(host, promql)) != expected:
        assert time.monotonic() < deadline, f"{promql} = {got}, not {expected}"
        time.sleep(0.5)


def at_least(host, promqls: list[str], floor: float, within: float = 30) -> list:
    """The values of `promqls` once all are at least `floor` (or at the deadline)."""
    deadline = time.monotonic() + within
    while True:
        got = [value(host, promql) or 0.0 for promql in promqls]
        if min(got) >= floor or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


@pytest.fixture
def prometheus(host):
    """Debian's Prometheus scraping the endpoint, for the life of the test."""
    host.run_test(f"rm -rf {PROMETHEUS_DIR} && mkdir -p {PROMETHEUS_DIR}/data")
    host.run_test(f"cat > {PROMETHEUS_DIR}/prometheus.yml <<'EOF'\n{SCRAPE_CONFIG}EOF")
    host.run_test(
        f"systemd-run --unit {UNIT} --property RuntimeMaxSec=300 prometheus"
        f" --config.file={PROMETHEUS_DIR}/prometheus.yml"
        f" --storage.tsdb.path={PROMETHEUS_DIR}/data --web.listen-address={PROMETHEUS}"
    )
    # Prometheus answers queries only once it has replayed its (empty) data
    # directory: seconds on a loaded machine.
    ready = host.run(
        f"for _ in $(seq 1 120); do {FETCH} >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1",
        f"http://{PROMETHEUS}/-/ready",
    )
    try:
        assert ready.rc == 0, host.run(f"journalctl -u {UNIT} --no-pager -n 30").stdout
        eventually(host, 'up{job="apache"}', 1.0)
        yield
    finally:
        host.run(f"systemctl stop {UNIT}")
        host.run(f"systemctl reset-failed {UNIT}")


def test_prometheus_scrapes_the_websockets_the_test_holds(host, prometheus):
    me = 'sidecar="metrics-sidecar"'
    eventually(host, f"mod_wsgi_ws_sidecar_websockets{{{me}}}", 0.0)
    accepted_before = value(host, f"mod_wsgi_ws_sidecar_websockets_accepted_total{{{me}}}") or 0
    probe = staged_probe(host)
    for _ in range(HELD):
        host.run_test(
            f"(timeout 60 python3 {probe} ws /metrics/ws --frames 100000 --timeout 55"
            " >/dev/null 2>&1 &)"
        )
    try:
        eventually(host, f"mod_wsgi_ws_sidecar_websockets{{{me}}}", float(HELD))
        assert value(host, f"mod_wsgi_ws_sidecar_websockets_max{{{me}}}") == 500
        assert value(host, "apache_up") == 1
        # apache_* come from the sidecar's last tick, up to one poll interval
        # older than the live gauge waited for above: a later scrape has them.
        busy, reply = at_least(
            host, ['apache_workers{state="busy"}', 'apache_scoreboard{state="reply"}'], HELD
        )
        assert busy >= HELD, busy
        assert reply >= HELD, reply
        accepted = value(host, f"mod_wsgi_ws_sidecar_websockets_accepted_total{{{me}}}")
        assert accepted - accepted_before == HELD
        # Every tick went to the held clients: the fan-out delay is recorded, and small.
        p99 = value(
            host,
            "histogram_quantile(0.99, rate(mod_wsgi_ws_sidecar_fanout_seconds_bucket[10s]))",
        )
        assert p99 is not None and 0 < p99 < 0.5, p99
        assert value(host, "rate(apache_accesses_total[10s])") > 0  # Prometheus's own scrapes
    finally:
        host.run("pkill -f 'probe.py ws /metrics/ws --frames 100000'")
    eventually(host, f"mod_wsgi_ws_sidecar_websockets{{{me}}}", 0.0)
