"""The browser client (push.js) in Debian's Chromium inside each web host's
container, on the demo page at http://127.0.0.1/push/ through Apache: it
resumes after the sidecar is killed without losing or repeating a message,
and opens a private channel with the token the application signs."""

import json

from conftest import STAGE_DIR, browse, stage_scripts

testinfra_hosts = ["ansible://webservers"]

PAGE = "http://127.0.0.1/push/"
KILL_SIDECAR = ["pkill", "-9", "-f", r"^\(wsgi:push\) "]
READ = "JSON.stringify(window.pushDemo)"


def publish_from_page(*texts: str) -> str:
    """JavaScript: the page's own form asks the application to publish each text."""
    return f"""(async () => {{
  for (const text of {json.dumps(list(texts))}) {{
    document.getElementById('text').value = text;
    document.getElementById('publish').requestSubmit();
    await new Promise((done) => setTimeout(done, 300));
  }}
  return true;
}})()"""


def received(count: int) -> str:
    return f"window.pushDemo && window.pushDemo.received.length >= {count}"


def test_the_page_resumes_after_the_sidecar_is_killed(host):
    stage_scripts(host, "push_probe.py")
    publish_while_down = ["python3", f"{STAGE_DIR}/push_probe.py", "publish", "demo", "down"]
    report = browse(
        host,
        [
            {"do": "navigate", "url": PAGE + "?channel=demo"},
            {"do": "wait", "expr": "window.pushDemo.statuses.includes('live')", "timeout": 15},
            {"do": "eval", "expr": publish_from_page("a", "b", "c")},
            {"do": "wait", "expr": received(3), "timeout": 10},
            {"do": "run", "argv": KILL_SIDECAR, "timeout": 10},
            {"do": "run", "argv": [*publish_while_down, "--count", "3"], "timeout": 20},
            {"do": "wait", "expr": received(6), "timeout": 30},
            {"do": "sleep", "seconds": 1},
            {"do": "eval", "expr": READ},
        ],
    )
    steps = report["steps"]
    assert all(s.get("ok", True) for s in steps), steps
    demo = json.loads(steps[-1]["value"])
    texts = [m["data"]["text"] for m in demo["received"]]
    assert texts == ["a", "b", "c", "down-0", "down-1", "down-2"], demo
    ids = [m["id"] for m in demo["received"]]
    assert len(set(ids)) == 6
    assert demo["resets"] == [] and demo["refused"] == []
    assert "reconnecting" in demo["statuses"], demo["statuses"]


def test_the_page_opens_a_private_channel_with_the_apps_token_only(host):
    report = browse(
        host,
        [
            # The demo application signs tokens for demo* channels.
            {"do": "navigate", "url": PAGE + "?channel=demo.private"},
            {"do": "wait", "expr": "window.pushDemo.statuses.includes('live')", "timeout": 15},
            {"do": "eval", "expr": publish_from_page("for my eyes")},
            {"do": "wait", "expr": received(1), "timeout": 10},
            {"do": "eval", "expr": READ},
            # ...and for no other: the page gets no token, the sidecar refuses.
            {"do": "navigate", "url": PAGE + "?channel=orders.9"},
            {"do": "wait", "expr": "window.pushDemo.refused.length > 0", "timeout": 15},
            {"do": "eval", "expr": READ},
        ],
    )
    steps = report["steps"]
    assert all(s.get("ok", True) for s in steps), steps
    private = json.loads(steps[4]["value"])
    assert [m["data"]["text"] for m in private["received"]] == ["for my eyes"]
    other = json.loads(steps[-1]["value"])
    assert other["refused"] == ["no valid token"] and other["received"] == []
