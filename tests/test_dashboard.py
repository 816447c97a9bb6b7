"""The dashboard page without a browser: what its script reads exists in its markup,
and the page is whole (the browser tests in molecule/default run it for real)."""

import re
from pathlib import Path

import pytest
from mod_wsgi_ws_sidecar import dashboard as sidecar
from mod_wsgi_ws_sidecar import trends as sidecar_trends
from mod_wsgi_ws_sidecar.trends import Route, Trends

HTML = (Path(sidecar.__file__).resolve().parent / "dashboard.html").read_text()
SCRIPT = HTML[HTML.index('<script>\n"use strict";') : HTML.rindex("</script>")]
IDS = set(re.findall(r'\bid="([^"]+)"', HTML))


def test_every_element_the_script_uses_exists():
    # $("x") and set("x", ...) would throw on a missing element and stop the page.
    used = set(re.findall(r'\b(?:\$|set)\("([^"]+)"', SCRIPT))
    assert used, "no element lookups found: has the script's helper been renamed?"
    assert used <= IDS, sorted(used - IDS)


def test_ids_are_unique():
    ids = re.findall(r'\bid="([^"]+)"', HTML)
    assert len(ids) == len(set(ids)), ids


def test_the_sidecar_marker_is_there_once_and_before_the_script():
    # sidecar.render_index replaces the first marker with window.METRICS_BASE.
    assert HTML.count("<!--METRICS_BASE-->") == 1
    assert HTML.index("<!--METRICS_BASE-->") < HTML.index("<script>")


def test_no_external_resources():
    assert not re.search(r"<(link|img|iframe|object|embed)\b", HTML)
    assert not re.search(r"<script\s+src", HTML)
    assert "@import" not in HTML and "url(" not in HTML


def test_reconnect_backoff_is_bounded():
    # Capped backoff, and a watchdog for feeds that go silent without a close.
    assert re.search(r"BACKOFF_MAX = \d+", SCRIPT)
    assert "Math.min(BACKOFF_MAX" in SCRIPT
    assert "setInterval(" in SCRIPT


# --- inert to hostile strings: no markup is ever built from data -----------------------------

# Outside the script and the style: the markup itself.
MARKUP = re.sub(r"<(script|style)>.*?</\1>", "", HTML, flags=re.S)


@pytest.mark.parametrize(
    "sink",
    [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "createContextualFragment",
        "DOMParser",
        "srcdoc",
        "javascript:",
    ],
)
def test_no_html_sink_anywhere(sink):
    assert sink not in HTML


def test_no_code_from_strings():
    assert not re.search(r"\beval\s*\(", SCRIPT)
    assert not re.search(r"\bFunction\s*\(", SCRIPT)
    # Timers are handed functions, never source text.
    for first in re.findall(r"\bset(?:Timeout|Interval)\(\s*(\S)", SCRIPT):
        assert first not in "\"'`", first


def test_no_event_handler_attributes():
    # None in the markup (the <template> included)...
    assert not re.search(r"<[^>]*\son\w+\s*=", MARKUP, flags=re.I)
    # ...none set by the script: its attributes are the charts' numbers alone,
    # and its only handlers are its own WebSocket's.
    assert set(re.findall(r"setAttribute\(\s*([^,]+),", SCRIPT)) == {'"d"'}
    assert set(re.findall(r"\.(on\w+)\s*=", SCRIPT)) == {"onopen", "onmessage", "onclose"}
    assert not re.search(r"addEventListener|\.(?:href|src|action)\s*=", SCRIPT)


def test_data_reaches_the_page_as_text_only():
    # Every string of a frame goes through textContent or a text node; clones
    # come from the page's own <template>, never from a frame.
    assert "textContent" in SCRIPT and "createTextNode" in SCRIPT
    assert SCRIPT.count("cloneNode(true)") == 1
    assert '$("chart-template").content.firstElementChild.cloneNode(true)' in SCRIPT
    assert re.search(r'<template id="chart-template">\s*<figure class="chart">', HTML)


def test_no_external_urls():
    # A URL of any scheme, or scheme-relative, in the markup or the script.
    assert not re.findall(r"\b[a-z][a-z0-9+.-]*://", HTML), re.findall(r"\S*://\S*", HTML)
    assert not re.search(r"""["'(=]\s*//""", HTML)
    assert not re.search(r"\b(?:src|href|action|formaction|xlink:href)\s*=", MARKUP)
    # The one connection: back to the page's own host, below its mount.
    (url,) = re.findall(r"new WebSocket\((.*)\);", SCRIPT)
    assert url == "`${proto}://${location.host}${window.METRICS_BASE}/ws`"
    assert not re.search(r"\b(?:fetch|XMLHttpRequest|EventSource|sendBeacon|import)\s*\(", SCRIPT)


# --- the last ten minutes ------------------------------------------------------------------


def test_the_page_asks_for_the_history_as_soon_as_it_is_open():
    (literal,) = re.findall(r"const HISTORY_REQUEST = '([^']*)';", SCRIPT)
    assert literal == sidecar.HISTORY_REQUEST  # the one message the sidecar heeds
    (onopen,) = re.findall(r"ws\.onopen = (.*);\n", SCRIPT)
    assert "ws.send(HISTORY_REQUEST)" in onopen
    assert SCRIPT.count(".send(") == 1  # and nothing else is ever sent


def test_the_charts_span_the_sidecars_history():
    (seconds,) = re.findall(r"const HISTORY_SECONDS = (\d+);", SCRIPT)
    assert int(seconds) == sidecar_trends.HISTORY_SECONDS
    # The history frame's own span wins over the default.
    assert "span = h.span" in SCRIPT
    # Points are merged by their time and the newest span kept: never replaced.
    merge = SCRIPT[SCRIPT.index("function mergePoints") : SCRIPT.index("function snapshotPoint")]
    assert "byTime.has(p.t)" in merge and "p.t >= newest - span" in merge
    assignments = re.findall(r"(?<![.\w])points = (.*);", SCRIPT)
    assert assignments == ["[]", "merged.filter((p) => p.t >= newest - span)"], assignments


def test_the_chart_template_matches_the_drawing_box():
    (width, height) = re.findall(r"const CHART_W = (\d+), CHART_H = (\d+);", SCRIPT)[0]
    template = HTML[HTML.index('<template id="chart-template">') : HTML.index("</template>")]
    assert f'viewBox="0 0 {width} {height}"' in template
    for part in ('class="line"', 'class="cap"', 'class="now"', 'class="top"', 'class="title"'):
        assert part in template, part


def test_near_cap_is_the_sidecars_word_not_the_pages():
    # sidecar_trends.NEAR_CAP is the one threshold; the page has none of its own.
    assert "s.near_cap" in SCRIPT
    code = re.sub(r"(?<![:\"'`])//.*", "", SCRIPT)  # without the comments
    assert not re.search(r"\b0?\.9\d*\b|\b90\b|NEAR_CAP", code)
    assert 'id="near-cap"' in HTML


def test_what_the_page_reads_is_what_the_sidecar_sends(synthetic):
    trends = Trends([Route("metrics", 10, path="/metrics/ws")], 1.0)
    sidecar.build_payload(synthetic, 1, 100.0, trends)
    frame = sidecar.build_payload(synthetic, 2, 101.0, trends)
    history = trends.history()
    reads = {
        "p": (frame, ["rates", "sidecars", "vhosts", "vhosts_omitted", "workers", "summary"]),
        "rates": (frame["rates"], ["rps", "bps"]),
        "s": (frame["sidecars"][0], ["name", "websockets", "max_clients", "near_cap"]),
        "v": (frame["vhosts"][0], ["vhost", "busy", "websockets", "rps"]),
        "h": (history, ["span", "interval", "sidecars", "points"]),
    }
    for name, (part, keys) in reads.items():
        for key in keys:
            assert key in part, (name, key)
            assert re.search(rf"\b{name}\.{key}\b", SCRIPT), f"{name}.{key}"
    # A history point, as the page takes it apart.
    assert "([t, busy, rps, bps, open])" in SCRIPT
    time, busy, rps, bps, open_now = history["points"][-1]
    assert (busy, rps, bps) == (frame["summary"]["busy"], *frame["rates"].values())
    assert open_now == [s["websockets"] for s in frame["sidecars"]]
    # A snapshot's point has the same time as the history's point of that tick,
    # which is how the page knows it has it already.
    assert time == frame["time"]
