"""The dashboard in a real browser: Debian's Chromium (installed by prepare.yml) runs
inside each container, driven by molecule/browser.py over the DevTools protocol, and
loads the page through Apache at http://127.0.0.1/metrics/. All of it on the
container's own loopback."""

import base64
import json
import os
import re
import struct
import time
from pathlib import Path

import pytest
from conftest import browse

REPO = Path(__file__).resolve().parents[3]
URL = "http://127.0.0.1/metrics/"

# JavaScript read in the page; ids are the dashboard's own.
LIVE = "document.getElementById('state').className === 'live'"
SEQ = "Number(document.getElementById('updated').dataset.seq || 0)"
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
            {"do": "wait", "expr": own_socket, "timeout": 5},
            {"do": "eval", "expr": READ_PAGE},
            {"do": "sleep", "seconds": 3},
            # Rates need two frames with counters that did not go back (a child
            # process that ends takes its counters with it): "-" until then.
            {"do": "wait", "expr": RATES_SHOWN, "timeout": 5},
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
    # Still updating three seconds later: new frames, later data, the rates computed.
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
            {"do": "wait", "expr": back, "timeout": 30},
            {"do": "sleep", "seconds": 1.5},
            {"do": "eval", "expr": f"[window.marker, states, {READ_PAGE}]"},
        ],
    )
    steps = report["steps"]
    before, command, back_again = steps[3]["value"], steps[4], steps[5]
    assert command["rc"] == 0, command
    assert back_again["ok"], f"not live again 30 s after the {action}: {steps[6:]}"
    marker, states, after = steps[7]["value"]
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


def test_page_does_not_pass_a_frozen_feed_off_as_live(host):
    # The sidecar's daemon process, stopped: its sockets stay open, its frames stop.
    pid = host.check_output("pgrep -f '^.wsgi:metrics-sid'").split()[0]
    stale = f"!({LIVE}) && document.getElementById('state').textContent.startsWith('stale')"
    try:
        report = browse(
            host,
            [
                *open_live(),
                {"do": "run", "argv": ["kill", "-STOP", pid], "timeout": 5},
                {"do": "wait", "expr": stale, "timeout": 12},
                {"do": "eval", "expr": READ_PAGE},
                {"do": "run", "argv": ["kill", "-CONT", pid], "timeout": 5},
                {"do": "wait", "expr": f"{LIVE} && {SEQ} > 0", "timeout": 30},
                {"do": "eval", "expr": READ_PAGE},
            ],
        )
    finally:
        host.run("kill -CONT %s", pid)
    steps = report["steps"]
    assert steps[2]["rc"] == 0, steps[2]
    assert steps[3]["ok"], f"still shown as live with the feed frozen: {steps[3]}"
    # Told within the page's limit (5 s of silence) and its 1 s watchdog tick.
    assert steps[3]["elapsed"] < 8, steps[3]
    frozen, resumed = steps[4]["value"], steps[7]["value"]
    assert frozen["state_class"] == "down", frozen
    assert steps[6]["ok"], f"not live again after the sidecar resumed: {steps[6]}"
    assert resumed["time"] > steps[5]["at"]  # a frame taken after the resume
    print(json.dumps({"stale_after_s": steps[3]["elapsed"], "live_again_s": steps[6]["elapsed"]}))


def artifact_dir() -> Path:
    path = Path(os.environ.get("MWS_ARTIFACT_DIR") or REPO / ".state" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_screenshot_of_the_live_dashboard(host):
    report = browse(
        host,
        [
            # Some traffic on the demo app, so the rates show something.
            {"do": "traffic", "url": "http://127.0.0.1/", "seconds": 8},
            *open_live(),
            {"do": "wait", "expr": f"{LIVE} && {RATES_SHOWN} && {SEQ} >= 3", "timeout": 10},
            {"do": "eval", "expr": READ_PAGE},
            {"do": "screenshot"},
        ],
    )
    steps = report["steps"]
    assert steps[3]["ok"], steps[3]
    assert steps[4]["value"]["state"] == "live", steps[4]
    png = base64.b64decode(steps[5]["png_base64"])
    path = artifact_dir() / f"dashboard-{host.backend.host}.png"
    path.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack("!II", png[16:24])  # the IHDR chunk comes first
    assert (width, height) == (1280, 800)
    # A blank or unstyled page compresses to a few KB; the dashboard's text does not.
    assert len(png) > 20_000, f"{path}: only {len(png)} bytes"
    print(json.dumps({"screenshot": str(path), "bytes": len(png)}))


@pytest.fixture(autouse=True)
def _timed(request):
    started = time.monotonic()
    yield
    print(json.dumps({"test": request.node.name, "seconds": round(time.monotonic() - started, 1)}))
