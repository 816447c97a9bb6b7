#!/usr/bin/env bash
# Deploys the default variant into a local Debian 12 systemd container and
# publishes the site on this machine's loopback only, for a person's browser.
# Re-running converges the same container again.
#
#   scripts/demo.sh            deploy (or re-deploy)
#   scripts/demo.sh destroy    remove the container
#
# DEMO_PORT (8080) picks the port on 127.0.0.1, DEMO_NAME the container.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "${PROJECT_ROOT}"

NAME=${DEMO_NAME:-mod-wsgi-ws-sidecar-demo}
export DEMO_NAME="${NAME}"  # the inventory reads it
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

# A container left from a run with another port is started afresh.
if [ "$(docker inspect -f '{{.State.Running}}' "${NAME}" 2>/dev/null)" != true ] \
    || [ "$(docker port "${NAME}" 80/tcp 2>/dev/null)" != "127.0.0.1:${PORT}" ]; then
  docker rm -f "${NAME}" >/dev/null 2>&1 || true
  python3 -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1]))).close()' \
    "${PORT}" 2>/dev/null \
    || die "port ${PORT} on 127.0.0.1 is taken by another program; pick another: DEMO_PORT=8081 $0"
  say "starting container ${NAME} (site published on 127.0.0.1:${PORT})"
  start_systemd_container "${NAME}" "${IMAGE}" -p "127.0.0.1:${PORT}:80"
fi

# A browser on this machine reaches the published port through Docker's
# proxy, so Apache sees the bridge's gateway address, not 127.0.0.1: admit
# it beside loopback. Nothing else can reach the port (it is bound to this
# machine's loopback), and other containers on the bridge have addresses of
# their own, which stay refused.
GATEWAY=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}' "${NAME}")
[ -n "${GATEWAY}" ] || die "cannot tell the Docker bridge gateway of ${NAME}"
ALLOW_FROM=$(printf '{"mod_wsgi_ws_sidecar_allow_from": ["127.0.0.1", "::1", "%s"]}' "${GATEWAY}")

say "deploying with playbooks/site.yml"
ansible-playbook -i scripts/demo/inventory.yml playbooks/site.yml --extra-vars "${ALLOW_FROM}"

# Checked as the user will reach it: from this machine, through the
# published port, as a browser would (its Host and Origin): the app, the
# dashboard's page, then live frames over its WebSocket.
say "checking the dashboard at http://127.0.0.1:${PORT}/metrics/"
probe() {
  python3 molecule/probe.py "$@" --port "${PORT}" --host-header "127.0.0.1:${PORT}" \
    --header "Origin: http://127.0.0.1:${PORT}" --timeout 5
}
checked=
for _ in $(seq 1 20); do
  page=$(probe http /metrics/ 2>/dev/null) || page=
  feed=$(probe ws /metrics/ws --frames 2 2>/dev/null) || feed=
  app=$(probe http / 2>/dev/null) || app=
  if python3 - "${page}" "${feed}" "${app}" <<'PY'
import json, sys
page, feed, app = (json.loads(text or "{}") for text in sys.argv[1:])
assert app.get("status") == 200, app.get("status")
assert page.get("status") == 200 and "window.METRICS_BASE" in page["body"], page.get("status")
frames = [frame["data"] for frame in feed.get("frames", [])]
assert [frame.get("type") for frame in frames] == ["snapshot"] * 2, feed.get("handshake")
PY
  then
    checked=1
    break
  fi
  sleep 1
done
[ -n "${checked}" ] || die "the site does not answer at http://127.0.0.1:${PORT}/ as it should (app: ${app:0:120}; page: ${page:0:120}; feed: ${feed:0:200})"

cat <<TXT

The demo is up.
  Dashboard:  http://127.0.0.1:${PORT}/metrics/
  WSGI app:   http://127.0.0.1:${PORT}/
  Shell:      docker exec -it ${NAME} bash
  Remove:     scripts/demo.sh destroy
TXT
