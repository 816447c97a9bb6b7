#!/usr/bin/env bash
# Deploys the default variant into a local Debian 12 systemd container and
# publishes the site on this machine's loopback only, for a person's browser.
# Re-running converges the same container again.
#
#   scripts/demo.sh            deploy (or re-deploy)
#   scripts/demo.sh destroy    remove the container
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "${PROJECT_ROOT}"

NAME=mod-wsgi-ws-sidecar-demo
PORT=${DEMO_PORT:-8080}
IMAGE=mod-wsgi-ws-sidecar/debian:bookworm

if [ "${1:-}" = destroy ]; then
  ensure_docker
  docker rm -f "${NAME}" >/dev/null 2>&1 || true
  say "removed ${NAME}"
  exit 0
fi

ensure_docker
ensure_venv
"${PROJECT_ROOT}/scripts/images/build.sh" bookworm
activate_venv

if [ "$(docker inspect -f '{{.State.Running}}' "${NAME}" 2>/dev/null)" != true ]; then
  say "starting container ${NAME} (site published on 127.0.0.1:${PORT})"
  start_systemd_container "${NAME}" "${IMAGE}" -p "127.0.0.1:${PORT}:80"
fi

say "deploying with playbooks/site.yml"
ansible-playbook -i scripts/demo/inventory.yml playbooks/site.yml

# Checked from inside the container, over its own loopback.
say "checking the dashboard through Apache"
docker exec "${NAME}" python3 -c '
import time, urllib.request
for attempt in range(20):
    try:
        body = urllib.request.urlopen("http://127.0.0.1/metrics/", timeout=3).read().decode()
        assert "window.METRICS_BASE" in body
        break
    except Exception:
        time.sleep(0.5)
else:
    raise SystemExit("the dashboard did not answer through Apache")
'
cat <<TXT

The demo is up.
  Dashboard:  http://127.0.0.1:${PORT}/metrics/
  WSGI app:   http://127.0.0.1:${PORT}/
  Shell:      docker exec -it ${NAME} bash
  Remove:     scripts/demo.sh destroy
TXT
