"""The dashboard page without a browser: what its script reads exists in its markup,
and the page is whole (the browser tests in molecule/default run it for real)."""

import re
from pathlib import Path

HTML = (Path(__file__).resolve().parent.parent / "files" / "dashboard.html").read_text()
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
