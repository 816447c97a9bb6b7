"""Demo WSGI application, deployed when the user names none of their own.

It only says which mod_wsgi daemon process group served the request, so a
test can tell the application from the sidecar.
"""


def application(environ, start_response):
    group = environ.get("mod_wsgi.process_group", "")
    body = f"Hello from the WSGI application (process group: {group})\n".encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
