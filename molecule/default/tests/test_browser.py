"""The dashboard in a real browser: Debian's Chromium (installed by prepare.yml) runs
inside each container, driven by molecule/browser.py over the DevTools protocol, and
loads the page through Apache at http://127.0.0.1/metrics/. All of it on the
container's own loopback."""

import ast
import base64
import json
import math
import os
import re
import struct
import time
from pathlib import Path

import pytest
from conftest import LOAD_CLIENT, STAGED_LOAD_CLIENT, browse, put_file

REPO = Path(__file__).resolve().parents[3]
URL = "http://127.0.0.1/metrics/"

# JavaScript read in the page; ids are the dashboard's own.
LIVE = "document.getElementById('state').className === 'live'"
SEQ = "Number(document.getElementById('updated').dataset.seq || 0)"
TIME = "Number(document.getElementById('updated').dataset.time || 0)"
REQUESTS = "[...document.querySelectorAll('#workers td.request')].map((td) => td.textContent)"
READ_PAGE = """(() => {
  const text = (id) => document.getElementById(id).textContent;
  const updated = document.getElementById('updated');
  return {
    state: text('state'), state_class: document.getElementById('state').className,
    busy: text('busy'), idle: text('idle'), other: text('other'),
    processes: text('processes'), rps: text('rps'), bps: text('bps'),
    uptime: text('uptime'), generation: text('generation'), updated: text('updated'),
    seq: Number(updated.dataset.seq), time: Number(updated.dataset.time),
    error_shown: document.getElementById('error').style.display === 'block',
    rows: [...document.querySelectorAll('#workers tr')].map(
      (tr) => [...tr.children].map((td) => td.textContent)),
  };
})()"""
RATES_SHOWN = (
    r"/^\d+\.\d$/.test(document.getElementById('rps').textContent)"
    r" && /^\d+(\.\d)? [KMGT]?B\/s$/.test(document.getElementById('bps').textContent)"
)
UPTIME = re.compile(r"^(?:(\d+)d )?(?:(\d+)h )?(\d+)m (\d+)s$")


def open_live(timeout: float = 15) -> list[dict]:
    """Steps: load the page and wait until it shows live data."""
    return [
        {"do": "navigate", "url": URL},
        {"do": "wait", "expr": f"{LIVE} && {SEQ} > 0", "timeout": timeout},
    ]


def mark(name: str) -> dict:
    """Step: the page's clock now (epoch seconds) kept as window[name], for later
    waits to compare with: no earlier than the step before began (Date.now()
    drops the sub-milliseconds, the +1 ms makes up for them)."""
    return {"do": "eval", "expr": f"window.{name} = (Date.now() + 1) / 1000"}


def seconds(uptime: str) -> int:
    match = UPTIME.match(uptime)
    assert match, uptime
    days, hours, minutes, secs = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def test_page_shows_live_data_and_keeps_updating(host, probe):
    own_socket = "[...document.querySelectorAll('#workers td.request')].some((t) =>"
    own_socket += " t.textContent === 'GET /metrics/ws HTTP/1.1')"
    report = browse(
        host,
        [
            *open_live(),
            # The first frame predates the page's connection; the next shows it.
            {"do": "wait", "expr": own_socket, "timeout": 30},
            {"do": "eval", "expr": f"window.before = {READ_PAGE}"},
            # Two more frames, of data two seconds later: after a late tick the
            # next comes at once, so two frames alone may be a second apart.
            {
                "do": "wait",
                "expr": f"{SEQ} >= before.seq + 2 && {TIME} >= before.time + 2",
                "timeout": 30,
            },
            # Rates need two frames with counters that did not go back (a child
            # process that ends takes its counters with it): "-" until then.
            {"do": "wait", "expr": RATES_SHOWN, "timeout": 30},
            {"do": "eval", "expr": READ_PAGE},
        ],
    )
    steps = report["steps"]
    assert all(step["ok"] for step in steps if step["do"] in ("navigate", "wait")), steps
    before, after = steps[3]["value"], steps[6]["value"]
    for page in (before, after):
        assert (page["state"], page["state_class"], page["error_shown"]) == ("live", "live", False)
        for card in ("busy", "idle", "other", "processes", "generation"):
            assert re.fullmatch(r"\d+", page[card]), (card, page[card])
        assert int(page["busy"]) >= 1  # the page's own WebSocket holds a worker
        assert int(page["idle"]) >= 1
        seconds(page["uptime"])
    # The worker table lists the Apache thread tunnelling this page's WebSocket.
    assert ["busy_write", "127.0.0.1", "GET /metrics/ws HTTP/1.1"] in [
        [row[2], row[3], row[5]] for row in after["rows"]
    ], after["rows"]
    # Same server as a plain WebSocket client sees.
    frame = probe.ws("/metrics/ws")["frames"][0]["data"]
    assert after["generation"] == str(frame["server"]["running_generation"])
    # Still updating: new frames, later data, the rates computed.
    assert after["seq"] >= before["seq"] + 2, (before["seq"], after["seq"])
    assert after["time"] > before["time"]
    assert after["updated"] != before["updated"]
    assert seconds(after["uptime"]) > seconds(before["uptime"])
    assert re.fullmatch(r"\d+\.\d", after["rps"]), after["rps"]
    assert re.fullmatch(r"\d+(\.\d)? [KMGT]?B/s", after["bps"]), after["bps"]
    assert report["dialogs"] == []


# Request lines Apache accepts and keeps on its scoreboard while the WebSocket is
# open. No spaces (they end the request target). In the path, not the query
# string, which the sidecar hides: "/metrics/<payload>/../ws", with one ".."
# for each of the payload's segments, is routed to /metrics/ws (Apache resolves
# the dot segments; the scoreboard keeps the raw line). Its 64-byte request
# field may cut the line's end, never a payload.
HOSTILE = {
    "img": "<img/src=x/onerror=xss=1,alert(1)>",
    "script": "<script>xss=2;alert(2)</script>",
    "quotes": "<b/id=\"injected\"/onclick='xss=3'>",
}
SCOREBOARD_REQUEST_CHARS = 63


def hostile_path(payload: str) -> str:
    return "/metrics/" + payload + "/.." * (payload.count("/") + 1) + "/ws"


INJECTED = """(() => ({
  xss: typeof window.xss,
  images: document.querySelectorAll('img').length,
  injected: document.getElementById('injected') !== null,
  handlers: document.querySelectorAll('[onerror], [onclick], [onload]').length,
  scripts: document.scripts.length,
  only_text: [...document.querySelectorAll('#workers *, #vhosts *, #sidecars *')].every((e) =>
    e.tagName === 'TR' || (e.tagName === 'TD' && [...e.childNodes].every((n) => n.nodeType === 3))),
  shown: [...document.querySelectorAll('#workers td.request')]
    .filter((td) => td.offsetHeight > 0).map((td) => td.innerText),
}))()"""
# The control: what the same strings do when parsed as HTML into this very page.
AS_HTML = """(() => {
  const box = document.createElement('div');
  box.hidden = true;
  document.body.appendChild(box);
  for (const td of document.querySelectorAll('#workers td.request')) {
    if (td.textContent.includes('/<')) {
      box.appendChild(document.createRange().createContextualFragment(td.textContent));
    }
  }
  return box.children.length;
})()"""


def test_hostile_scoreboard_strings_are_shown_as_text(host):
    shown_all = " && ".join(
        f"{REQUESTS}.some((t) => t.includes({json.dumps(p)}))" for p in HOSTILE.values()
    )
    holds = [
        {"do": "hold", "path": hostile_path(payload), "seconds": 12} for payload in HOSTILE.values()
    ]
    report = browse(
        host,
        [
            *open_live(),
            {"do": "eval", "expr": "document.scripts.length"},
            *holds,
            {"do": "wait", "expr": shown_all, "timeout": 8},
            {"do": "sleep", "seconds": 1},  # time for an error handler or a script to run
            {"do": "eval", "expr": INJECTED},
            {"do": "eval", "expr": AS_HTML},
            {"do": "wait", "expr": "typeof window.xss !== 'undefined'", "timeout": 5},
            {"do": "sleep", "seconds": 1},
        ],
    )
    steps = report["steps"]
    for hold in steps[3:6]:
        assert hold["status"] == "HTTP/1.1 101 Switching Protocols", hold
    assert steps[6]["ok"], f"payloads not shown: {steps[6]}"
    page = steps[8]["value"]
    # Shown, as the very text of the request line (as far as the scoreboard keeps it)...
    for payload in HOSTILE.values():
        line = f"GET {hostile_path(payload)} HTTP/1.1"[:SCOREBOARD_REQUEST_CHARS]
        assert line in page["shown"], (line, page["shown"])
    # ...and inert: no element, attribute or script from them, nothing ran.
    assert page["only_text"]
    assert page["images"] == 0
    assert not page["injected"]
    assert page["handlers"] == 0
    assert page["scripts"] == steps[2]["value"]
    assert page["xss"] == "undefined"
    control_started = steps[9]["at"]
    assert [d for d in report["dialogs"] if d["at"] < control_started] == []
    # Control: parsed as HTML, the same strings do run here, and the checks above see it.
    assert steps[9]["value"] >= len(HOSTILE)
    assert steps[10]["ok"], "the payloads did not run even when parsed as HTML"
    assert {d["message"] for d in report["dialogs"]} & {"1", "2"}, report["dialogs"]


SECRET = "s3cr3t-canary-7f3a"


def test_query_strings_are_hidden_on_the_page(host):
    # The sidecar's show_query_strings is off by default: the request line is
    # shown, its query string is not, anywhere in the page.
    redacted = "GET /metrics/ws?[redacted] HTTP/1.1"
    report = browse(
        host,
        [
            *open_live(),
            {"do": "hold", "path": f"/metrics/ws?token={SECRET}", "seconds": 10},
            {"do": "wait", "expr": f"{REQUESTS}.includes({json.dumps(redacted)})", "timeout": 8},
            {"do": "eval", "expr": "document.documentElement.outerHTML"},
            {"do": "eval", "expr": "document.body.innerText"},
        ],
    )
    steps = report["steps"]
    assert steps[2]["status"] == "HTTP/1.1 101 Switching Protocols", steps[2]
    assert steps[3]["ok"], f"the redacted request line not shown: {steps[3]}"
    assert redacted in steps[4]["value"]
    for text in (steps[4]["value"], steps[5]["value"]):
        assert SECRET not in text
        assert "token=" not in text


# The charts and the tables beside them, as the page has drawn them. `points`
# is the page's own list of the last ten minutes (a top-level binding of its
# script), read for the times only.
READ_CHARTS = """(() => {
  const box = document.getElementById('charts');
  const num = (v) => (v === undefined || v === '' ? null : Number(v));
  return {
    points: num(box.dataset.points), history: num(box.dataset.history),
    histories: num(box.dataset.histories), first: num(box.dataset.first),
    last: num(box.dataset.last), times: points.map((p) => p.t),
    charts: [...box.querySelectorAll('figure.chart')].map((f) => ({
      key: f.dataset.chart, points: Number(f.dataset.points || 0),
      line: f.querySelector('.line').getAttribute('d'),
      cap: f.querySelector('.cap').getAttribute('d'),
      now: f.querySelector('.now').textContent, near_cap: f.classList.contains('near-cap'),
    })),
    near_cap: {shown: document.getElementById('near-cap').style.display === 'block',
      text: document.getElementById('near-cap').textContent},
    sidecars: [...document.querySelectorAll('#sidecars tr')].map((tr) => ({
      name: tr.dataset.sidecar, near_cap: tr.classList.contains('near-cap'),
      cells: [...tr.children].map((td) => td.textContent)})),
    vhosts: [...document.querySelectorAll('#vhosts tr')].map(
      (tr) => [...tr.children].map((td) => td.textContent)),
    workers: [...document.querySelectorAll('#workers tr')].map(
      (tr) => [...tr.children].map((td) => td.textContent)),
  };
})()"""
HISTORY_DRAWN = "Number(document.getElementById('charts').dataset.history || 0) > 1"
# The default scenario's one sidecar, the dashboard itself (its daemon group's name).
SIDECAR = "metrics-sidecar"
CHART_KEYS = ["busy", "rps", "bps", f"ws:{SIDECAR}"]


# The time of the newest point drawn (`points`: see READ_CHARTS).
LAST_POINT = "(points.length ? points[points.length - 1].t : 0)"


def histories(count: int) -> str:
    return f"Number(document.getElementById('charts').dataset.histories || 0) >= {count}"


def test_charts_show_the_last_minutes_as_soon_as_the_page_opens(host):
    report = browse(
        host,
        [
            *open_live(),
            # A hang guard only: that the history, not ticks, drew the charts is
            # shown by their points from before the page existed (below).
            {"do": "wait", "expr": HISTORY_DRAWN, "timeout": 30},
            {"do": "eval", "expr": READ_CHARTS},
        ],
    )
    steps = report["steps"]
    assert steps[2]["ok"], f"no history drawn: {steps[2]}"
    page = steps[3]["value"]
    assert page["histories"] == 1
    assert page["history"] > 1
    # Every point of the history drawn, but for the oldest when it lies a few
    # ms more than ten minutes before the newest (a tick's time is taken after
    # its scoreboard read): the page keeps ten minutes, the sidecar 601 ticks.
    assert page["points"] >= page["history"] - 1, (page["points"], page["history"])
    assert page["last"] - page["first"] <= 600
    # Points from before the page existed: the sidecar's, not the page's own.
    assert page["first"] < steps[0]["at"], (page["first"], steps[0]["at"])
    assert page["times"] == sorted(set(page["times"]))
    charts = {c["key"]: c for c in page["charts"]}
    assert list(charts) == CHART_KEYS, list(charts)
    for key in ("busy", f"ws:{SIDECAR}"):  # never missing (rates are after a restart)
        chart = charts[key]
        assert chart["points"] > 1, chart
        # One path of numbers: a move, then lines to each further point.
        assert re.fullmatch(r"M[\d.]+ [\d.]+( [LM][\d.]+ [\d.]+)+", chart["line"]), chart
    # The cap is a line across the whole chart.
    assert re.fullmatch(r"M0 [\d.]+ H600", charts[f"ws:{SIDECAR}"]["cap"]), charts[f"ws:{SIDECAR}"]
    assert re.fullmatch(r"\d+ / \d+", charts[f"ws:{SIDECAR}"]["now"]), charts[f"ws:{SIDECAR}"]
    assert charts["rps"]["points"] >= 1 and charts["bps"]["points"] >= 1


OWN_SOCKET = f"{REQUESTS}.includes('GET /metrics/ws HTTP/1.1')"
VHOST_ROWS = "document.querySelectorAll('#vhosts tr[data-vhost]').length > 0"


def test_tables_list_the_sidecar_against_its_cap_and_the_default_vhost(host, probe):
    frame = probe.ws("/metrics/ws")["frames"][0]["data"]
    cap = next(s["max_clients"] for s in frame["sidecars"] if s["name"] == SIDECAR)
    report = browse(
        host,
        [
            *open_live(),
            # The first frame predates the page's connection; the next shows it.
            {"do": "wait", "expr": f"{OWN_SOCKET} && {VHOST_ROWS}", "timeout": 5},
            {"do": "eval", "expr": READ_CHARTS},
        ],
    )
    steps = report["steps"]
    assert steps[2]["ok"], steps[2]
    page = steps[3]["value"]
    # This page's own WebSocket: a worker on the default virtual host...
    own = next(row for row in page["workers"] if row[5:] == ["GET /metrics/ws HTTP/1.1"])
    vhost = own[4]
    assert re.fullmatch(r"[\w.-]+:80", vhost), vhost  # the name, and the port
    # ...listed with its busy workers and WebSockets (this page's among them).
    rows = {row[0]: row for row in page["vhosts"]}
    assert vhost in rows, page["vhosts"]
    busy, websockets, rps = rows[vhost][1:]
    assert int(busy) >= int(websockets) >= 1
    assert re.fullmatch(r"\d+\.\d", rps), rps
    # The sidecar against its cap, not near it.
    (metrics,) = [s for s in page["sidecars"] if s["name"] == SIDECAR]
    name, opened, shown_cap, used = metrics["cells"]
    assert (name, shown_cap) == (SIDECAR, str(cap))
    assert 1 <= int(opened) < cap
    assert used == f"{math.floor(100 * int(opened) / cap + 0.5)}%"  # as JavaScript rounds
    assert not metrics["near_cap"]
    assert page["near_cap"] == {"shown": False, "text": ""}


# restart: what an operator does; reload: what the role's handlers do (a graceful
# restart that also restarts mod_wsgi's daemon processes, the sidecar's included).
@pytest.mark.parametrize("action", ["restart", "reload"])
def test_page_reconnects_by_itself_after_apache(host, action):
    watch = """(() => {
  window.marker = 'same document';
  window.states = [];
  const state = document.getElementById('state');
  new MutationObserver(() => states.push(
    {at: Date.now() / 1000, text: state.textContent, cls: state.className})
  ).observe(state, {childList: true, characterData: true, subtree: true, attributes: true});
  return true;
})()"""
    back = f"states.some((s) => s.cls !== 'live') && {LIVE}"
    report = browse(
        host,
        [
            *open_live(),
            {"do": "eval", "expr": watch},
            {"do": "eval", "expr": READ_PAGE},
            {"do": "run", "argv": ["systemctl", action, "apache2"], "timeout": 90},
            mark("commandDone"),
            {"do": "wait", "expr": back, "timeout": 30},
            # A frame taken after the command, however long the first ticks take.
            {"do": "wait", "expr": f"{LIVE} && {TIME} > commandDone", "timeout": 30},
            {"do": "eval", "expr": f"[window.marker, states, {READ_PAGE}]"},
        ],
    )
    steps = report["steps"]
    before, command, back_again = steps[3]["value"], steps[4], steps[6]
    assert command["rc"] == 0, command
    assert back_again["ok"], f"not live again 30 s after the {action}: {steps[7:]}"
    assert steps[7]["ok"], f"no frame taken after the {action}: {steps[7:]}"
    marker, states, after = steps[8]["value"]
    assert marker == "same document"  # never reloaded
    down = [s for s in states if s["cls"] != "live"]
    assert down and down[0]["at"] >= command["started"], states
    # The page says what it is doing while down.
    assert all("retry" in s["text"] or s["text"] == "connecting" for s in down), states
    live_again = next(s for s in states if s["cls"] == "live" and s["at"] > down[0]["at"])
    assert after["state"] == "live"
    # Fresh data from the restarted server.
    assert after["time"] > command["finished"]
    if action == "restart":
        assert seconds(after["uptime"]) <= after["time"] - command["started"] + 1, after["uptime"]
    else:  # a graceful restart keeps the uptime and starts a new generation
        assert seconds(after["uptime"]) > after["time"] - command["started"], after["uptime"]
        assert int(after["generation"]) > int(before["generation"]), (before, after)
    reconnect = live_again["at"] - down[0]["at"]
    print(
        json.dumps(
            {
                "action": action,
                "command_s": round(command["finished"] - command["started"], 2),
                "down_to_live_s": round(reconnect, 2),
                "live_after_command_s": round(live_again["at"] - command["finished"], 2),
                "states": [s["text"] for s in states],
            }
        )
    )
    assert reconnect < 15, states


# The page's silence (seconds since its last frame, its own `since`) at the
# moment it first says the feed is stale: an observer runs right after the
# watchdog's tick, before anything else moves `since`.
WATCH_SILENCE = """(() => {
  window.silentWhenStale = null;
  const state = document.getElementById('state');
  new MutationObserver(() => {
    if (silentWhenStale === null && state.textContent.startsWith('stale')) {
      silentWhenStale = (Date.now() - since) / 1000;
    }
  }).observe(state, {childList: true, characterData: true, subtree: true});
  return true;
})()"""


def test_page_does_not_pass_a_frozen_feed_off_as_live(host):
    # The sidecar's daemon process, stopped: its sockets stay open, its frames stop.
    pid = host.check_output("pgrep -f '^.wsgi:metrics-sid'").split()[0]
    stale = f"!({LIVE}) && document.getElementById('state').textContent.startsWith('stale')"
    try:
        report = browse(
            host,
            [
                *open_live(),
                {"do": "eval", "expr": WATCH_SILENCE},
                {"do": "run", "argv": ["kill", "-STOP", pid], "timeout": 5},
                # A hang guard: how long the page took is its own figure, silentWhenStale.
                {"do": "wait", "expr": stale, "timeout": 30},
                {"do": "eval", "expr": f"[{READ_PAGE}, silentWhenStale]"},
                {"do": "run", "argv": ["kill", "-CONT", pid], "timeout": 5},
                mark("resumedAt"),
                {"do": "wait", "expr": f"{LIVE} && {TIME} > resumedAt", "timeout": 30},
                {"do": "eval", "expr": READ_PAGE},
            ],
        )
    finally:
        host.run("kill -CONT %s", pid)
    steps = report["steps"]
    assert steps[3]["rc"] == 0, steps[3]
    assert steps[4]["ok"], f"still shown as live with the feed frozen: {steps[4]}"
    frozen, silent = steps[5]["value"]
    # Told within the page's limit (5 s of silence) and its 1 s watchdog tick,
    # by the page's own clock: from its last frame to its saying so.
    assert silent is not None and silent < 8, silent
    resumed = steps[9]["value"]
    assert frozen["state_class"] == "down", frozen
    assert steps[8]["ok"], f"not live again after the sidecar resumed: {steps[8]}"
    assert resumed["time"] > steps[6]["at"]  # a frame taken after the resume
    print(
        json.dumps(
            {
                "stale_after_s": silent,
                "stale_seen_after_stop_s": steps[4]["elapsed"],
                "live_again_s": steps[8]["elapsed"],
            }
        )
    )


# A reconnect to the same sidecar (frozen until the page gives it up, then
# resumed) brings a history that overlaps the page's points; a reload of
# Apache brings a new sidecar with seconds of history. Either way the page
# keeps what it had, adds what it lacked, and holds each moment once.
@pytest.mark.parametrize("cause", ["frozen", "reload"])
def test_a_reconnect_merges_the_history_with_the_older_points(host, cause):
    pid = host.check_output("pgrep -f '^.wsgi:metrics-sid'").split()[0]
    if cause == "frozen":
        stale = f"!({LIVE}) && document.getElementById('state').textContent.startsWith('stale')"
        cut = [
            {"do": "run", "argv": ["kill", "-STOP", pid], "timeout": 5},
            {"do": "wait", "expr": stale, "timeout": 30},
            {"do": "run", "argv": ["kill", "-CONT", pid], "timeout": 5},
        ]
    else:  # the page may be live again before systemctl returns
        cut = [
            {"do": "run", "argv": ["systemctl", "reload", "apache2"], "timeout": 90},
            {"do": "wait", "expr": "true", "timeout": 1},
            {"do": "eval", "expr": "true"},
        ]
    try:
        report = browse(
            host,
            [
                *open_live(),
                {"do": "wait", "expr": HISTORY_DRAWN, "timeout": 30},
                {"do": "sleep", "seconds": 3},
                {"do": "eval", "expr": READ_CHARTS},
                *cut,
                {"do": "wait", "expr": f"{LIVE} && {histories(2)}", "timeout": 30},
                # Then the point of a tick taken after that history came (so not
                # in it): the feed goes on after the cut.
                mark("historyIn"),
                {"do": "wait", "expr": f"{LIVE} && {LAST_POINT} > historyIn", "timeout": 30},
                {"do": "eval", "expr": READ_CHARTS},
            ],
        )
    finally:
        if cause == "frozen":
            host.run("kill -CONT %s", pid)
    steps = report["steps"]
    assert steps[2]["ok"], steps[2]
    assert steps[5]["rc"] == 0 and steps[6]["ok"], steps[5:7]
    assert steps[8]["ok"], f"no second history: {steps[8]}"
    assert steps[10]["ok"], f"no point after the second history: {steps[10]}"
    before, after = steps[4]["value"], steps[11]["value"]
    resumed = steps[7]["at"]
    assert after["histories"] == 2
    # Each moment once, oldest first, within the sidecar's ten minutes.
    assert after["times"] == sorted(set(after["times"])), after["times"]
    assert after["times"][-1] - after["times"][0] <= 600
    # Nothing the page had is lost, and the feed goes on after the cut.
    assert set(before["times"]) <= set(after["times"]), sorted(
        set(before["times"]) - set(after["times"])
    )
    assert after["times"][-1] > resumed
    # More points drawn than the last history brought: the older ones were kept...
    assert after["points"] > after["history"], (after["points"], after["history"])
    assert after["first"] == before["first"] < steps[5]["started"]
    if cause == "frozen":
        # ...and the history repeated most of what the page had: merged, not added again.
        assert after["history"] > len(before["times"]), (after["history"], before["points"])
        assert after["points"] < len(before["times"]) + after["history"]
    print(
        json.dumps(
            {
                "cause": cause,
                "before": before["points"],
                "after": after["points"],
                "second_history": after["history"],
            }
        )
    )


def near_cap_threshold() -> float:
    """The one threshold, trends.NEAR_CAP, as the file the role deploys sets it."""
    tree = ast.parse((REPO / "files" / "mod_wsgi_ws_sidecar" / "trends.py").read_text())
    (value,) = (
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["NEAR_CAP"]
    )
    return ast.literal_eval(value)


def hold_in_background(host, clients: int, seconds: float) -> list[dict]:
    """Steps: bench/loadclient.py inside the container, detached, holding
    `clients` WebSockets at /metrics/ws for `seconds` (all of it bounded by
    `timeout`); its report goes to LOAD_REPORT."""
    put_file(host, STAGED_LOAD_CLIENT, LOAD_CLIENT.read_text())
    command = (
        f"(timeout -k 5 {int(seconds) + 40} python3 {STAGED_LOAD_CLIENT}"
        f" --url ws://127.0.0.1/metrics/ws --clients {clients} --excess 0"
        f" --http-url http://127.0.0.1/ --hold {seconds} --max-seconds {int(seconds) + 30}"
        f" >{LOAD_REPORT} 2>&1 &)"
    )
    return [{"do": "run", "argv": ["sh", "-c", f"rm -f {LOAD_REPORT}; {command}"], "timeout": 10}]


def load_report(host, within: float = 60) -> dict:
    """What the load client printed once it ended (its clients closed)."""
    deadline = time.monotonic() + within
    while not host.file(LOAD_REPORT).exists or not host.file(LOAD_REPORT).size:
        assert time.monotonic() < deadline, f"the load client did not end within {within} s"
        time.sleep(0.5)
    time.sleep(0.5)  # written in one go, but let it finish
    return json.loads(host.file(LOAD_REPORT).content_string)


LOAD_REPORT = "/opt/mws-test/load-report.json"


def test_a_sidecar_near_its_cap_is_flagged(host, probe):
    frame = probe.ws("/metrics/ws")["frames"][0]["data"]
    cap = next(s["max_clients"] for s in frame["sidecars"] if s["name"] == SIDECAR)
    # The default scenario's cap (500): held within the role's planned capacity.
    assert cap <= 500, cap
    clients = math.ceil(near_cap_threshold() * cap)  # the page's own makes one more
    near = "document.getElementById('near-cap').style.display === 'block'"
    flagged_row = (
        f"document.querySelector('#sidecars tr.near-cap[data-sidecar={json.dumps(SIDECAR)}]')"
    )
    report = browse(
        host,
        [
            *open_live(),
            {"do": "eval", "expr": READ_CHARTS},
            *hold_in_background(host, clients, 20),
            {"do": "wait", "expr": f"{near} && {flagged_row} !== null", "timeout": 40},
            {"do": "eval", "expr": READ_CHARTS},
            # Cleared once the clients have gone.
            {"do": "wait", "expr": f"!({near})", "timeout": 60},
            {"do": "eval", "expr": READ_CHARTS},
        ],
        limit=170,
    )
    steps = report["steps"]
    quiet, flagged, cleared = steps[2]["value"], steps[5]["value"], steps[7]["value"]
    assert not quiet["near_cap"]["shown"], quiet["near_cap"]
    assert steps[3]["rc"] == 0, steps[3]
    assert steps[4]["ok"], f"not flagged with {clients} WebSockets held: {steps[4]}"
    (row,) = [s for s in flagged["sidecars"] if s["name"] == SIDECAR]
    opened = int(row["cells"][1])
    assert opened >= clients, row
    assert row["cells"][2] == str(cap) and row["near_cap"]
    banner = flagged["near_cap"]["text"]
    assert f"{SIDECAR} {opened} / {cap}" in banner, banner
    ws_chart = next(c for c in flagged["charts"] if c["key"] == f"ws:{SIDECAR}")
    assert ws_chart["near_cap"], ws_chart
    assert steps[6]["ok"], f"still flagged after the clients left: {steps[6]}"
    (row,) = [s for s in cleared["sidecars"] if s["name"] == SIDECAR]
    assert not row["near_cap"] and cleared["near_cap"]["text"] == ""
    load = load_report(host)
    assert load["held"]["connected"] == clients, load["held"]
    print(
        json.dumps(
            {
                "clients": clients,
                "cap": cap,
                "flagged_after_s": steps[4]["elapsed"],
                "cleared_after_s": steps[6]["elapsed"],
                "banner": banner,
            }
        )
    )


def artifact_dir() -> Path:
    path = Path(os.environ.get("MWS_ARTIFACT_DIR") or REPO / ".state" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_screenshot_of_the_live_dashboard(host):
    # Some WebSockets held and some traffic on the demo app, so the charts and
    # tables show something; at least 30 points of history (waited for when the
    # sidecar restarted within the last 30 s).
    held = 40
    enough = "Number(document.getElementById('charts').dataset.points || 0) >= 30"
    holding = (
        f"Number(document.querySelector('#sidecars tr[data-sidecar]')?.children[1].textContent)"
        f" >= {held}"
    )
    try:
        report = browse(
            host,
            [
                *hold_in_background(host, held, 45),
                {"do": "traffic", "url": "http://127.0.0.1/", "seconds": 10},
                *open_live(),
                {
                    "do": "wait",
                    "expr": f"{LIVE} && {RATES_SHOWN} && {enough} && {holding}",
                    "timeout": 45,
                },
                {"do": "sleep", "seconds": 2},
                {"do": "eval", "expr": READ_PAGE},
                {"do": "eval", "expr": READ_CHARTS},
                {"do": "screenshot"},
            ],
        )
    finally:
        load_report(host, within=120)  # its clients gone before the next test
    steps = report["steps"]
    assert steps[4]["ok"], steps[4]
    assert steps[6]["value"]["state"] == "live", steps[6]
    charts = steps[7]["value"]
    assert charts["points"] >= 30, charts["points"]
    png = base64.b64decode(steps[8]["png_base64"])
    path = artifact_dir() / f"dashboard-{host.backend.host}.png"
    path.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack("!II", png[16:24])  # the IHDR chunk comes first
    assert (width, height) == (1280, 800)
    # A blank or unstyled page compresses to a few KB; the dashboard's text does not.
    assert len(png) > 20_000, f"{path}: only {len(png)} bytes"
    print(json.dumps({"screenshot": str(path), "bytes": len(png), "points": charts["points"]}))


@pytest.fixture(autouse=True)
def _timed(request):
    started = time.monotonic()
    yield
    print(json.dumps({"test": request.node.name, "seconds": round(time.monotonic() - started, 1)}))
