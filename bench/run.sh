#!/usr/bin/env bash
# The capacity and fan-out benchmark: deploys the role into a fresh Debian 12
# container (mws-bench) with nginx beside it, runs bench/bench.py inside it
# (every client and every byte of traffic stays on the container's loopback),
# copies the results to bench/results/latest.json and renders
# docs/benchmarks.md and docs/benchmarks.png. See bench/README.md.
#
#   bench/run.sh                          sizes "1000 10000 20000" (about 20 min)
#   BENCH_SIZES="100 300" bench/run.sh    a quick run of the whole pipeline
#   BENCH_KEEP=1 bench/run.sh             keep the container afterwards
#   BENCH_ONLY="role tunnel" bench/run.sh  only these configurations (bench.py's keys)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
cd "${PROJECT_ROOT}"

NAME=mws-bench
IMAGE=mod-wsgi-ws-sidecar/debian:bookworm
SIZES=${BENCH_SIZES:-1000 10000 20000}
KEEP=${BENCH_KEEP:-0}
read -r -a only <<<"${BENCH_ONLY:-}"
# Wall-clock bounds: the driver inside the container, and the deployment.
DRIVER_TIMEOUT=${BENCH_TIMEOUT:-2700}
DEPLOY_TIMEOUT=900
RESULTS=bench/results/latest.json

read -r -a sizes <<<"${SIZES}"
[ ${#sizes[@]} -gt 0 ] || die "BENCH_SIZES is empty"
largest=0
for size in "${sizes[@]}"; do
  [[ "${size}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZES must be positive integers, got '${size}'"
  [ "${size}" -gt "${largest}" ] || die "BENCH_SIZES must be ascending, got '${SIZES}'"
  largest=${size}
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
# No published ports: the load client runs inside and targets 127.0.0.1.
start_systemd_container "${NAME}" "${IMAGE}"

say "deploying the role (capacity ${largest} WebSockets), nginx and the benchmark"
mkdir -p "${STATE_DIR}"
deploy_log="${STATE_DIR}/bench-deploy.log"
timeout "${DEPLOY_TIMEOUT}" ansible-playbook -i bench/inventory.yml bench/playbook.yml \
  -e "{\"bench_capacity\": ${largest}}" >"${deploy_log}" 2>&1 \
  || { tail -n 40 "${deploy_log}" >&2; die "deployment failed; see ${deploy_log}"; }

# What was measured: the commit, and the role and sidecar as they are in the
# working tree (they may differ from the commit).
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
revision+=", roles/ and files/ sha256 $(find roles files -type f -print0 | sort -z \
  | xargs -0 sha256sum | sha256sum | cut -c1-12)"

say "running the benchmark for sizes ${SIZES} (at most ${DRIVER_TIMEOUT} s)"
started=${SECONDS}
rc=0
# timeout runs inside the container, so it stops the driver itself; the
# host-side bound only catches a stuck docker exec.
timeout $((DRIVER_TIMEOUT + 120)) docker exec "${NAME}" \
  timeout --kill-after=60 "${DRIVER_TIMEOUT}" \
  python3 /opt/bench/bench.py --sizes "${sizes[@]}" --out /opt/bench/results.json \
  ${only[@]:+--only "${only[@]}"} \
  --command "BENCH_SIZES=\"${SIZES}\" ${BENCH_ONLY:+BENCH_ONLY=\"${BENCH_ONLY}\" }bench/run.sh" \
  --revision "${revision}" || rc=$?
say "benchmark driver finished in $((SECONDS - started)) s (exit ${rc})"

# Whatever the driver wrote, even a partial run, is copied out and rendered.
mkdir -p bench/results
docker cp "${NAME}:/opt/bench/results.json" "${RESULTS}" \
  || die "no results to copy (the driver wrote none)"
python bench/report.py "${RESULTS}" --markdown docs/benchmarks.md --png docs/benchmarks.png
exit "${rc}"
