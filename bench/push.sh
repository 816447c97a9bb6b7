#!/usr/bin/env bash
# The push path benchmark: deploys the role with its push sidecar into a
# fresh Debian 12 container (mws-bench-push) with python-socketio's server
# beside it, runs bench/push_bench.py inside it (every client and every
# byte of traffic stays on the container's loopback), and writes
# bench/results/push-latest.json and docs/benchmarks-push.md.
#
#   bench/push.sh                           sizes "1000 10000" (about 10 min)
#   BENCH_SIZES="100 300" bench/push.sh      a quick run of the whole pipeline
#   BENCH_TARGETS=role bench/push.sh         the role only
#   BENCH_KEEP=1 bench/push.sh               keep the container afterwards
#   BENCH_LISTENER=tcp BENCH_TARGETS=role bench/push.sh
#                                            the push sidecar on loopback TCP, as
#                                            the role's default processes, into
#                                            docs/benchmarks-push-tcp.md
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
cd "${PROJECT_ROOT}"

NAME=mws-bench-push
IMAGE=mod-wsgi-ws-sidecar/debian:bookworm
SIZES=${BENCH_SIZES:-1000 10000}
TARGETS=${BENCH_TARGETS:-role socketio}
DRIVER_TIMEOUT=${BENCH_TIMEOUT:-1800}
KEEP=${BENCH_KEEP:-0}
LISTENER=${BENCH_LISTENER:-unix}
case "${LISTENER}" in
  unix) RESULTS=bench/results/push-latest.json MARKDOWN=docs/benchmarks-push.md ;;
  tcp) RESULTS=bench/results/push-tcp-latest.json MARKDOWN=docs/benchmarks-push-tcp.md ;;
  *) die "BENCH_LISTENER must be unix or tcp, got '${LISTENER}'" ;;
esac
read -r -a sizes <<<"${SIZES}"
read -r -a targets <<<"${TARGETS}"
largest=0
for size in "${sizes[@]}"; do
  [[ "${size}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZES must be positive integers, got '${size}'"
  [ "${size}" -gt "${largest}" ] && largest=${size}
done

ensure_testbed
cleanup() {
  if [ "${KEEP}" = 1 ]; then
    say "keeping container ${NAME} (docker rm -f ${NAME} removes it)"
  else
    docker rm -f "${NAME}" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
say "starting container ${NAME}"
start_systemd_container "${NAME}" "${IMAGE}"
docker exec "${NAME}" mkdir -p /etc/systemd/system/redis-server.service.d /opt/bench

say "deploying the role with the push channel (capacity ${largest}) and python-socketio"
deploy_log="${STATE_DIR}/bench-push-deploy.log"
timeout 900 ansible-playbook -i bench/push_inventory.yml bench/push_playbook.yml \
  -e "{\"bench_capacity\": $((largest + 100)), \"bench_listener\": \"${LISTENER}\"}" \
  >"${deploy_log}" 2>&1 \
  || { tail -n 40 "${deploy_log}" >&2; die "deployment failed; see ${deploy_log}"; }

# Apache starts every child and thread up front for the capacity: let that settle.
sleep 30
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "running the push benchmark: targets ${TARGETS}, sizes ${SIZES}"
timeout $((DRIVER_TIMEOUT + 120)) docker exec "${NAME}" \
  timeout --kill-after=60 "${DRIVER_TIMEOUT}" \
  python3 /opt/bench/push_bench.py --targets "${targets[@]}" --sizes "${sizes[@]}" \
  --out /opt/bench/push-results.json --revision "${revision}"
mkdir -p bench/results
docker cp "${NAME}:/opt/bench/push-results.json" "${RESULTS}"
# What Apache's error log holds after the run: a descriptor the push sidecar
# lacked ("Error 24"), and any line logged at ERROR.
count() { docker exec "${NAME}" grep -c "$@" /var/log/apache2/error.log || true; }
python bench/push_report.py "${RESULTS}" --markdown "${MARKDOWN}" --listener "${LISTENER}" \
  --error-log "$(count -e "Error 24" -e "Too many open files")" "$(count ": ERROR ")"
