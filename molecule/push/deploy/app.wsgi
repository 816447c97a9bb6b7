"""The application whose code a deploy changes (tests/test_deploy.py): it
answers with the release its module release.py names, read at import."""

import release


def application(environ, start_response):
    body = f"release {release.RELEASE}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
