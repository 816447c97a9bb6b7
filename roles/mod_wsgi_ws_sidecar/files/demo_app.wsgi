"""Demo WSGI application, deployed when the user names none of their own.

It only says which mod_wsgi daemon process group served the request, so a
test can tell the application from the sidecar, and which Python runs it
(sys.prefix is the virtual environment when there is one).
"""

import sys


def application(environ, start_response):
    group = environ.get("mod_wsgi.process_group", "")
    python = f"Python {sys.version.split()[0]} in {sys.prefix}"
    body = f"Hello from the WSGI application (process group: {group})\n{python}\n".encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
