"""Demo WSGI application, deployed when the user names none of their own.

It says which mod_wsgi daemon process group served the request, so a test
can tell the application from the sidecar, and which Python runs it
(sys.prefix is the virtual environment when there is one).

With a push sidecar named "push" it also shows the push channel's two calls
from a request handler, for channels whose names start with "demo" only:
  POST /push-demo/publish  channel=demo&message=TEXT  publishes {"text": TEXT}
  GET  /push-demo/token?channel=demo.private          a token for that channel
A real application checks who asks before signing a token.
"""

import sys
from urllib.parse import parse_qs

DEMO_CHANNELS = "demo"
MAX_BODY = 4096


def answer(start_response, status, text):
    body = text.encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def push_demo(environ, start_response, action):
    try:
        from mod_wsgi_ws_sidecar import push
    except ImportError:
        return answer(start_response, "404 Not Found", "no push channel here\n")
    if action == "publish" and environ.get("REQUEST_METHOD") == "POST":
        size = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
        form = parse_qs(environ["wsgi.input"].read(size).decode("utf-8", "replace"))
    elif action == "token":
        form = parse_qs(environ.get("QUERY_STRING", ""))
    else:
        return answer(start_response, "404 Not Found", "unknown push demo call\n")
    channel = form.get("channel", [""])[0]
    if not channel.startswith(DEMO_CHANNELS) or not push.valid_channel(channel):
        return answer(start_response, "403 Forbidden", "the demo serves demo* channels only\n")
    try:
        if action == "token":
            return answer(start_response, "200 OK", push.token(channel, ttl=60) + "\n")
        position = push.publish(channel, {"text": form.get("message", [""])[0]})
    except (OSError, ValueError, push.PushError) as exc:
        return answer(start_response, "503 Service Unavailable", f"{exc}\n")
    return answer(start_response, "200 OK", position + "\n")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/push-demo/"):
        return push_demo(environ, start_response, path[len("/push-demo/") :])
    group = environ.get("mod_wsgi.process_group", "")
    python = f"Python {sys.version.split()[0]} in {sys.prefix}"
    return answer(
        start_response,
        "200 OK",
        f"Hello from the WSGI application (process group: {group})\n{python}\n",
    )
