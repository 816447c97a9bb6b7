"""Pure parts of the sidecar: config parsing, status normalisation, payload, HTML."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mod_wsgi_ws_sidecar import core
from mod_wsgi_ws_sidecar import dashboard as sidecar

FILES_DIR = Path(__file__).resolve().parent.parent / "files"

LISTEN = {"host": "127.0.0.1", "port": 8765}

# Spelled-out statuses as newer mod_wsgi releases report them.
WORDS = {
    ".": "Dead",
    "_": "Ready",
    "S": "Starting",
    "R": "Reading",
    "W": "Busy write",
    "K": "Keepalive",
    "L": "Logging",
    "D": "DNS lookup",
    "C": "Closing",
    "G": "Graceful",
    "I": "Idle kill",
}


def workers_of(scoreboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for proc in scoreboard["processes"] for w in proc["workers"]]


def code_of(worker: dict[str, Any]) -> str:
    """The mod_status code, also for recordings that spell statuses out."""
    return sidecar.STATE_CODES[sidecar.normalise_status(worker["status"])]


# --- config --------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = sidecar.parse_config({"listen": LISTEN})
    assert config == sidecar.Config()
    assert config.name == "metrics"
    assert config.poll_interval == 1.0
    assert config.heartbeat == 30.0
    assert config.max_clients == 500
    assert config.send_timeout == 1.0
    assert config.max_send_buffer == 262144
    assert config.path is None
    assert config.listen_url == "http://127.0.0.1:8765"


def test_config_all_keys() -> None:
    config = sidecar.parse_config(
        {
            "name": "dash",
            "listen": {"host": "::1", "port": 9000},
            "poll_interval": 2,
            "heartbeat": 10.5,
            "max_clients": 5,
            "send_timeout": 0.5,
            "max_send_buffer": 1024,
            "origins": ["https://Ops.Example.com", "http://10.0.0.5:8080/"],
        }
    )
    assert config == sidecar.Config(
        name="dash",
        host="::1",
        port=9000,
        poll_interval=2.0,
        heartbeat=10.5,
        max_clients=5,
        send_timeout=0.5,
        max_send_buffer=1024,
        origins=("https://ops.example.com:443", "http://10.0.0.5:8080"),
    )
    assert isinstance(config.poll_interval, float)


def test_config_unix_socket() -> None:
    config = sidecar.parse_config({"listen": {"path": "/run/x/sidecar.sock"}})
    assert config.path == "/run/x/sidecar.sock"
    assert config.listen_url == "unix:/run/x/sidecar.sock"


def test_config_host_defaults_to_loopback() -> None:
    assert sidecar.parse_config({"listen": {"port": 1234}}).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({}, "'listen'"),
        ({"listen": "127.0.0.1:8765"}, "'listen'"),
        ({"listen": {"host": "127.0.0.1"}}, "'listen.port'"),
        ({"listen": {"host": "127.0.0.1", "port": 0}}, "'listen.port'"),
        ({"listen": {"host": "127.0.0.1", "port": 70000}}, "'listen.port'"),
        ({"listen": {"host": "127.0.0.1", "port": "8765"}}, "'listen.port'"),
        ({"listen": {"host": "127.0.0.1", "port": True}}, "'listen.port'"),
        ({"listen": {"host": "", "port": 8765}}, "'listen.host'"),
        ({"listen": {"path": "run/x.sock"}}, "'listen.path'"),
        ({"listen": {"path": "/run/x.sock", "port": 1}}, "'listen'"),
        ({"listen": {"hots": "127.0.0.1", "port": 1}}, "'listen.hots'"),
        ({"listen": LISTEN, "pol_interval": 1}, "'pol_interval'"),
        ({"listen": LISTEN, "name": ""}, "'name'"),
        ({"listen": LISTEN, "name": "a\nb"}, "'name'"),
        ({"listen": LISTEN, "poll_interval": 0}, "'poll_interval'"),
        ({"listen": LISTEN, "poll_interval": -1}, "'poll_interval'"),
        ({"listen": LISTEN, "poll_interval": "1"}, "'poll_interval'"),
        ({"listen": LISTEN, "poll_interval": True}, "'poll_interval'"),
        ({"listen": LISTEN, "poll_interval": float("nan")}, "'poll_interval'"),
        ({"listen": LISTEN, "heartbeat": float("inf")}, "'heartbeat'"),
        ({"listen": LISTEN, "heartbeat": None}, "'heartbeat'"),
        ({"listen": LISTEN, "max_clients": 1.5}, "'max_clients'"),
        ({"listen": LISTEN, "max_clients": 0}, "'max_clients'"),
        ({"listen": LISTEN, "send_timeout": 0}, "'send_timeout'"),
        ({"listen": LISTEN, "max_send_buffer": -5}, "'max_send_buffer'"),
        ({"listen": LISTEN, "max_send_buffer": 1e6}, "'max_send_buffer'"),
        ({"listen": LISTEN, "origins": "https://example.com"}, "'origins'"),
        ({"listen": LISTEN, "origins": ["example.com"]}, "'origins'"),
        ({"listen": LISTEN, "origins": ["https://example.com/app"]}, "'origins'"),
        ({"listen": LISTEN, "secret": ""}, "'secret'"),
        ({"listen": LISTEN, "secret": "s" * 31}, "'secret'"),
        ({"listen": LISTEN, "secret": 12345678901234567890123456789012345}, "'secret'"),
        ({"listen": LISTEN, "secret": " " + "s" * 40}, "'secret'"),
        ({"listen": LISTEN, "secret": "s" * 40 + "\n"}, "'secret'"),
        ({"listen": LISTEN, "secret": "é" * 40}, "'secret'"),
    ],
)
def test_config_rejects_bad_values(data: dict[str, Any], key: str) -> None:
    with pytest.raises(core.ConfigError) as excinfo:
        sidecar.parse_config(data)
    assert key in str(excinfo.value)


def test_secret_is_kept_but_never_shown() -> None:
    secret = "k" * 43
    config = sidecar.parse_config({"listen": LISTEN, "secret": secret})
    assert config.secret == secret
    assert secret not in repr(config)
    with pytest.raises(core.ConfigError) as excinfo:
        sidecar.parse_config({"listen": LISTEN, "secret": "short-secret-value"})
    assert "short-secret-value" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("presented", "secret", "admitted"),
    [
        ("k" * 43, "k" * 43, True),
        (None, None, True),
        ("anything", None, True),
        (None, "k" * 43, False),
        ("", "k" * 43, False),
        ("k" * 42, "k" * 43, False),
        ("k" * 44, "k" * 43, False),
        ("K" * 43, "k" * 43, False),
        ("\udcff" * 43, "k" * 43, False),
    ],
)
def test_secret_matches(presented: str | None, secret: str | None, admitted: bool) -> None:
    assert core.secret_matches(presented, secret) is admitted


def test_config_must_be_object() -> None:
    with pytest.raises(core.ConfigError):
        sidecar.parse_config([LISTEN])


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"listen": LISTEN, "poll_interval": 0.25}))
    assert sidecar.load_config(str(path)).poll_interval == 0.25

    path.write_text("{not json")
    with pytest.raises(core.ConfigError, match=str(path)):
        sidecar.load_config(str(path))

    path.write_text(json.dumps({"listen": LISTEN, "max_clients": "many"}))
    with pytest.raises(core.ConfigError, match="max_clients"):
        sidecar.load_config(str(path))

    with pytest.raises(core.ConfigError, match=r"missing\.json"):
        sidecar.load_config(str(tmp_path / "missing.json"))


def test_cli_config(tmp_path: Path) -> None:
    assert sidecar.cli_config([]) == sidecar.Config()
    config = sidecar.cli_config(["--listen", "127.0.0.1:18765", "--poll-interval", "0.5"])
    assert (config.host, config.port, config.poll_interval) == ("127.0.0.1", 18765, 0.5)
    assert sidecar.cli_config(["--listen", "[::1]:9000"]).host == "::1"
    assert sidecar.cli_config(["--listen", "/tmp/sc.sock"]).path == "/tmp/sc.sock"

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"name": "x", "listen": LISTEN, "max_clients": 3}))
    config = sidecar.cli_config(["--config", str(path), "--listen", "127.0.0.1:9999"])
    assert (config.name, config.port, config.max_clients) == ("x", 9999, 3)

    with pytest.raises(SystemExit):
        sidecar.cli_config(["--listen", "nonsense"])
    with pytest.raises(core.ConfigError, match="poll_interval"):
        sidecar.cli_config(["--poll-interval", "-1"])


def test_main_reports_bad_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert sidecar.main(["--poll-interval", "0"]) == 2
    assert "poll_interval" in capsys.readouterr().err


def test_import_has_no_side_effects() -> None:
    code = (
        "import logging, sys, threading; sys.path.insert(0, sys.argv[1]); "
        "import mod_wsgi_ws_sidecar.dashboard, mod_wsgi_ws_sidecar.push_sidecar; "
        "assert not logging.getLogger().handlers; assert threading.active_count() == 1; "
        "assert 'mod_wsgi' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(FILES_DIR)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


# --- status normalisation ------------------------------------------------------------------


@pytest.mark.parametrize(("state", "code"), list(sidecar.STATE_CODES.items())[:-1])
def test_status_codes(state: str, code: str) -> None:
    assert sidecar.normalise_status(code) == state
    # the canonical names themselves are accepted too
    assert sidecar.normalise_status(state) == state
    assert sidecar.normalise_status(state.upper().replace("_", " ")) == state


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("Ready", "ready"),
        ("Busy write", "busy_write"),
        ("busy_write", "busy_write"),
        ("BUSY-READ", "busy_read"),
        ("Reading", "busy_read"),
        ("Writing", "busy_write"),
        ("Keepalive", "keepalive"),
        ("Keep alive", "keepalive"),
        ("Dead", "dead"),
        ("Open slot", "dead"),
        ("Starting", "starting"),
        ("Closing", "closing"),
        ("Logging", "logging"),
        ("DNS lookup", "dns"),
        ("Graceful", "graceful"),
        ("Gracefully finishing", "graceful"),
        ("Idle kill", "idle_kill"),
        (" w ", "busy_write"),
        ("Z", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        (7, "unknown"),
        ("exploding", "unknown"),
    ],
)
def test_status_words(raw: object, state: str) -> None:
    assert sidecar.normalise_status(raw) == state


# --- summarise / payload on every recorded scoreboard --------------------------------------


def test_summary_counts_every_slot(scoreboard: dict[str, Any]) -> None:
    summary = sidecar.summarise(scoreboard)
    slots = scoreboard["server_limit"] * scoreboard["thread_limit"]
    assert len(scoreboard["processes"]) == scoreboard["server_limit"]
    assert sum(summary["workers"].values()) == slots == summary["slots"]
    assert summary["idle"] == sum(1 for w in workers_of(scoreboard) if code_of(w) == "_")
    assert summary["processes"] == sum(1 for p in scoreboard["processes"] if p["pid"] != 0)
    assert summary["accesses"] == sum(w["access_count"] for w in workers_of(scoreboard))
    assert summary["bytes_served"] == sum(w["bytes_served"] for w in workers_of(scoreboard))
    assert summary["workers"]["unknown"] == 0
    assert 0 <= summary["busy"] <= slots - summary["idle"]


def test_spelled_out_statuses_summarise_the_same(scoreboard: dict[str, Any]) -> None:
    spelled = copy.deepcopy(scoreboard)
    for worker in workers_of(spelled):
        worker["status"] = WORDS[code_of(worker)]
    assert sidecar.summarise(spelled) == sidecar.summarise(scoreboard)
    now = 1.0
    assert sidecar.build_payload(spelled, 1, now) == sidecar.build_payload(scoreboard, 1, now)


def test_payload_lists_only_active_workers(scoreboard: dict[str, Any]) -> None:
    payload = sidecar.build_payload(scoreboard, 12, 1732400000.1234)
    assert payload["type"] == "snapshot"
    assert payload["seq"] == 12
    assert payload["time"] == 1732400000.123
    assert set(payload["server"]) == set(sidecar.SERVER_KEYS)
    assert payload["server"]["running_time"] == scoreboard["running_time"]
    expected = [w for w in workers_of(scoreboard) if code_of(w) not in ("_", ".")]
    assert len(payload["workers"]) + payload["workers_omitted"] == len(expected)
    for row in payload["workers"]:
        assert row["state"] not in ("ready", "dead")
        assert set(row) == {"process", "thread", "state", "client", "request", "vhost"}
        assert 0 <= row["thread"] < scoreboard["thread_limit"]


def test_payload_json_is_compact_and_small(scoreboard: dict[str, Any]) -> None:
    payload = sidecar.build_payload(scoreboard, 1, 1732400000.0)
    text = sidecar.encode(payload)
    assert json.loads(text) == payload
    assert text == json.dumps(payload, separators=(",", ":"))
    assert "\n" not in text
    assert text.startswith('{"type":"snapshot","seq":1,')
    if len(payload["workers"]) <= 4:  # an idle server: digest stays tiny whatever its size
        assert len(text.encode()) < 2048, len(text)


def test_synthetic_fixture_details(synthetic: dict[str, Any]) -> None:
    payload = sidecar.build_payload(synthetic, 1, 0.0)
    summary = payload["summary"]
    assert summary["processes"] == 2
    assert summary["busy"] == 2
    assert summary["idle"] == 6
    assert summary["workers"]["dead"] == 4
    assert summary["workers"]["busy_write"] == summary["workers"]["keepalive"] == 1
    assert [(w["process"], w["thread"], w["state"]) for w in payload["workers"]] == [
        (0, 0, "busy_write"),
        (0, 1, "keepalive"),
    ]
    ws_row = payload["workers"][0]
    assert ws_row["request"] == "GET /metrics/ws HTTP/1.1"
    assert ws_row["state"] == "busy_write"
    assert ws_row["client"] == "127.0.0.1"


def big_scoreboard(status: str, server_limit: int = 16, thread_limit: int = 64) -> dict[str, Any]:
    worker = {
        "thread_num": 0,
        "generation": 1,
        "status": status,
        "access_count": 3,
        "bytes_served": 4096,
        "start_time": 1732400001.5,
        "stop_time": 1732400001.6,
        "last_used": 1732400001.6,
        "client": "203.0.113.50",
        "request": "GET /some/rather/long/path/that/fills/the/scoreboard?x=1 HTTP/1.1",
        "vhost": "www.example.test:443",
    }
    return {
        "server_limit": server_limit,
        "thread_limit": thread_limit,
        "running_generation": 1,
        "restart_time": 1732400000.0,
        "current_time": 1732400100.0,
        "running_time": 100,
        "processes": [
            {
                "process_num": i,
                "pid": 1000 + i,
                "generation": 1,
                "quiescing": False,
                "workers": [
                    dict(worker, thread_num=i * thread_limit + j) for j in range(thread_limit)
                ],
            }
            for i in range(server_limit)
        ],
    }


def test_large_idle_scoreboard_gives_small_payload() -> None:
    text = sidecar.encode(sidecar.build_payload(big_scoreboard("_"), 1, 0.0))
    assert len(text) < 2048
    assert json.loads(text)["summary"]["idle"] == 16 * 64


def test_busy_payload_does_not_grow_with_the_scoreboard() -> None:
    small = sidecar.encode(sidecar.build_payload(big_scoreboard("W"), 1, 0.0))
    large = sidecar.encode(sidecar.build_payload(big_scoreboard("W", 40, 500), 1, 0.0))
    assert len(small) < 2048
    assert abs(len(large) - len(small)) < 64  # only the counts' digits differ


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_text_frame_is_one_unmasked_frame(size: int) -> None:
    text = "x" * size
    frame = core.text_frame(text)
    assert frame[0] == 0x81  # FIN, text
    assert not frame[1] & 0x80  # servers never mask
    length, start = frame[1], 2
    if length == 126:
        length, start = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, start = int.from_bytes(frame[2:10], "big"), 10
    assert length == size
    assert frame[start:] == text.encode()


def test_worker_list_is_capped() -> None:
    payload = sidecar.build_payload(big_scoreboard("W"), 1, 0.0)
    assert len(payload["workers"]) == sidecar.MAX_LISTED_WORKERS
    assert payload["workers_omitted"] == 16 * 64 - sidecar.MAX_LISTED_WORKERS
    assert payload["summary"]["busy"] == 16 * 64


def test_none_gives_error_frame() -> None:
    payload = sidecar.build_payload(None, 3, 5.0)
    assert payload == {
        "type": "error",
        "seq": 3,
        "time": 5.0,
        "error": "scoreboard not available: set server-metrics=on on this sidecar's "
        "WSGIDaemonProcess (or --server-metrics for mod_wsgi-express)",
    }


def test_snapshot_never_raises_on_garbage() -> None:
    sc = sidecar.Sidecar(sidecar.Config(), lambda: {"processes": 5}, clock=lambda: 7.0)
    frame = json.loads(sc.take_snapshot())
    assert frame["type"] == "error"
    assert frame["error"].startswith("scoreboard read failed: TypeError")
    assert (frame["seq"], frame["time"]) == (1, 7.0)


# --- dashboard HTML ------------------------------------------------------------------------


def test_index_prefix_injection() -> None:
    assert 'window.METRICS_BASE = "/metrics";' in sidecar.render_index("/metrics/")
    assert 'window.METRICS_BASE = "/metrics";' in sidecar.render_index("/metrics")
    assert 'window.METRICS_BASE = "";' in sidecar.render_index("")
    assert 'window.METRICS_BASE = "";' in sidecar.render_index("/")


@pytest.mark.parametrize(
    "hostile",
    [
        "/x</script><script>alert(1)</script>",
        "</script><script>alert(1)</script>",
        "/a<!--<script>",
        '/a"; alert(1); "',
        "/a&amp;\u2028/x",
    ],
)
def test_index_prefix_cannot_break_out(hostile: str) -> None:
    html = sidecar.render_index(hostile)
    head, _, _ = html.partition("<style>")
    injected = head[head.index("<script>window.METRICS_BASE") :]
    body = injected[len("<script>") : injected.index("</script>")]
    # exactly one statement assigning a JSON string; no raw markup characters inside it
    assert body.startswith("window.METRICS_BASE = ")
    literal = body[len("window.METRICS_BASE = ") : -1]
    assert body.endswith(";")
    assert not set("<>&") & set(literal)
    assert json.loads(literal) in (hostile.strip().rstrip("/"), "")
    assert "alert(1)</script>" not in html
    assert html.count("<script>") == 2 and html.count("</script>") == 2


def test_prefix_must_be_a_path() -> None:
    # "@evil.example" would turn ws://host@evil.example/ws into a connection elsewhere
    assert 'window.METRICS_BASE = "";' in sidecar.render_index("@evil.example")


def test_dashboard_script_parses(tmp_path: Path) -> None:
    assert shutil.which("node"), "node (on every project machine) checks the dashboard's script"
    html = sidecar.render_index("/metrics")
    script = html[
        html.index('<script>\n"use strict";') + len("<script>") : html.rindex("</script>")
    ]
    path = tmp_path / "dashboard.js"
    path.write_text(script)
    result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dashboard_renders_data_as_text_only() -> None:
    html = sidecar.DASHBOARD_HTML
    assert "innerHTML" not in html and "outerHTML" not in html
    assert "insertAdjacentHTML" not in html and "document.write" not in html
    for element_id in ("state", "busy", "idle", "workers", "error", "rps", "bps", "delay"):
        assert f'id="{element_id}"' in html
    assert "http://" not in html and "https://" not in html  # no external assets


# --- the Origin check on the upgrade -------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        # No Origin: not a browser, so not a hijacking.
        (None, "example.com", (), True),
        # The site's own origin, however the port is spelled.
        ("http://example.com", "example.com", (), True),
        ("https://example.com", "example.com", (), True),
        ("http://example.com", "example.com:80", (), True),
        ("https://EXAMPLE.com:443", "example.com", (), True),
        ("http://127.0.0.1:8081", "127.0.0.1:8081", (), True),
        ("http://[::1]:8080", "[::1]:8080", (), True),
        # Another site, another port of the same host, or no usable origin.
        ("http://evil.example", "example.com", (), False),
        ("http://example.com.evil.example", "example.com", (), False),
        ("http://example.com:8080", "example.com", (), False),
        ("http://127.0.0.1", "127.0.0.1:8081", (), False),
        ("null", "example.com", (), False),
        ("file://", "example.com", (), False),
        ("http://example.com", None, (), False),
        # Listed origins pass from any host.
        ("https://ops.example.com", "example.com", ("https://ops.example.com:443",), True),
        ("http://ops.example.com", "example.com", ("https://ops.example.com:443",), False),
    ],
)
def test_origin_allowed(
    origin: str | None, host: str | None, allowed: tuple, expected: bool
) -> None:
    assert core.origin_allowed(origin, host, allowed) is expected


def test_site_host_trusts_the_value_apache_appended() -> None:
    # A client's own X-Forwarded-Host comes first; mod_proxy appends the real Host.
    headers = {"Host": "127.0.0.1:8765", "X-Forwarded-Host": "evil.example, example.com"}
    assert core.site_host(headers) == "example.com"
    assert core.site_host({"Host": "example.com"}) == "example.com"
