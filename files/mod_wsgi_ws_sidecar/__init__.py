"""The Python the role mod_wsgi_ws_sidecar.apache.mod_wsgi_ws_sidecar
installs on a host, as one package on the daemon processes' python-path.

- push: what a WSGI application imports to publish to browsers.
- core: what every WebSocket sidecar stands on (settings, clients, serving).
- dashboard, push_sidecar: the two built-in sidecars, applications on core.
- runner: runs a user's own sidecar script as a mod_wsgi service script.
- clients, metrics, trends, fleet: the client cap shared by a sidecar's
  processes, the Prometheus endpoint, the dashboard's history and fleet view.

Importing the package imports none of them: the application's processes
load only what they use.
"""
