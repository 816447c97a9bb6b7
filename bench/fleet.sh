#!/usr/bin/env bash
# The fleet benchmark: the push channel across two web hosts behind the
# balancers. Starts a Redis host, web hosts on Debian 12 and 13 and two
# HAProxy balancers on a Docker network of its own (mws-bench-fleet),
# deploys playbooks/examples/fleet.yml there (bench/fleet_vars.yml sizes
# it), then measures from inside the balancers, every client on their
# loopback:
# - steady: N subscribers, half through each balancer, one message a
#   second published by the demo application through the first balancer
#   (bench/push_bench.py --targets fleet): publish-to-receipt p50/p99/max
# - the deploy's effect: 1,000 subscribers through the first balancer
#   (molecule/push_load.py, which resumes as push.js does) while the
#   application publishes 5 a second, once without and once during a
#   rolling deploy of both web hosts
# and writes bench/results/fleet-latest.json and docs/benchmarks-fleet.md.
#
#   bench/fleet.sh                          sizes "1000 10000" (about 15 min)
#   BENCH_SIZES="200" bench/fleet.sh        a quick run of the whole pipeline
#   BENCH_KEEP=1 bench/fleet.sh             keep the containers afterwards
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
cd "${PROJECT_ROOT}"

PREFIX=mws-bench-fleet
NETWORK=${PREFIX}
SIZES=${BENCH_SIZES:-1000 10000}
DEPLOY_CLIENTS=${BENCH_DEPLOY_CLIENTS:-1000}
KEEP=${BENCH_KEEP:-0}
RESULTS=bench/results/fleet-latest.json
WORK="${STATE_DIR}/bench-fleet"
LEAD=${PREFIX}-lb1
SHARE=${PREFIX}-lb2
read -r -a sizes <<<"${SIZES}"
largest=0
for size in "${sizes[@]}"; do
  [[ "${size}" =~ ^[1-9][0-9]*$ ]] && [ "${size}" -ge 2 ] \
    || die "BENCH_SIZES must be whole numbers of at least 2, got '${size}'"
  [ "${size}" -gt "${largest}" ] && largest=${size}
done
[ "${largest}" -le 16000 ] || die "BENCH_SIZES: at most 16,000 (8,000 through each balancer)"
# Every web host may get a little more than its half: leastconn balances each balancer alone.
capacity=$((largest / 2 + largest / 10 + 100))
[ "${capacity}" -ge "${DEPLOY_CLIENTS}" ] || capacity=$((DEPLOY_CLIENTS + 100))
HOSTS=("${PREFIX}-redis:bookworm" "${PREFIX}-web12:bookworm" "${PREFIX}-web13:trixie"
  "${LEAD}:trixie" "${SHARE}:trixie")

ensure_testbed
cleanup() {
  if [ "${KEEP}" = 1 ]; then
    say "keeping the containers ${PREFIX}-* and network ${NETWORK}"
    return
  fi
  for host in "${HOSTS[@]}"; do docker rm -f "${host%%:*}" >/dev/null 2>&1 || true; done
  docker network rm "${NETWORK}" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "${WORK}" && mkdir -p "${WORK}"
docker network create "${NETWORK}" >/dev/null
for host in "${HOSTS[@]}"; do
  say "starting container ${host%%:*}"
  start_systemd_container "${host%%:*}" "mod-wsgi-ws-sidecar/debian:${host##*:}" --network "${NETWORK}"
  docker exec "${host%%:*}" mkdir -p /etc/systemd/system/redis-server.service.d /opt/bench
done

deploy=(ansible-playbook -i bench/fleet_inventory.yml playbooks/examples/fleet.yml
  -e @bench/fleet_vars.yml -e "{\"bench_capacity\": ${capacity}}")
say "deploying the fleet (each web host sized for ${capacity} subscribers)"
log="${WORK}/deploy.log"
{ timeout 600 ansible-playbook -i bench/fleet_inventory.yml bench/fleet_prepare.yml \
  && timeout 1200 "${deploy[@]}"; } >"${log}" 2>&1 \
  || { tail -n 40 "${log}" >&2; die "deployment failed; see ${log}"; }
# Apache starts every child and thread up front for the capacity: let that settle.
sleep 30

# One steady run of SIZE subscribers: the share through the second balancer
# subscribes first and waits; the lead subscribes its half and publishes.
steady() {
  local size=$1 share=$(($1 / 2)) lead=$(($1 - $1 / 2)) i
  docker exec "${SHARE}" rm -f /opt/bench/ready /opt/bench/published /opt/bench/share.json
  docker exec -d "${SHARE}" timeout 1500 python3 /opt/bench/push_bench.py --targets fleet \
    --sizes "${share}" --no-publish --ready-file /opt/bench/ready \
    --published-file /opt/bench/published --out /opt/bench/share.json \
    --samples-out /opt/bench/share-samples.json
  for i in $(seq 1 300); do
    docker exec "${SHARE}" test -e /opt/bench/ready && break
    [ "${i}" = 300 ] && die "the second balancer's ${share} subscribers never got ready"
    sleep 1
  done
  timeout 1500 docker exec "${LEAD}" timeout 1400 python3 /opt/bench/push_bench.py \
    --targets fleet --sizes "${lead}" --out /opt/bench/lead.json --revision "${revision}" \
    --samples-out /opt/bench/lead-samples.json
  docker exec "${SHARE}" touch /opt/bench/published
  for i in $(seq 1 120); do
    docker exec "${SHARE}" test -e /opt/bench/share.json && break
    [ "${i}" = 120 ] && die "the second balancer's subscribers never reported"
    sleep 1
  done
  sleep 2 # the file is written whole once the run ends
  docker cp "${LEAD}:/opt/bench/lead.json" "${WORK}/steady-${size}-lead.json"
  docker cp "${SHARE}:/opt/bench/share.json" "${WORK}/steady-${size}-share.json"
  docker cp "${LEAD}:/opt/bench/lead-samples.json" "${WORK}/steady-${size}-lead-samples.json"
  docker cp "${SHARE}:/opt/bench/share-samples.json" "${WORK}/steady-${size}-share-samples.json"
  sleep 5 # let the closed connections go
}

# DEPLOY_CLIENTS subscribers and 5 messages a second through the first
# balancer, for 60 s or through a rolling deploy of both web hosts.
with_load() {
  local name=$1 out=/opt/bench/load-$1.json
  shift
  docker exec "${LEAD}" rm -f /opt/bench/stop "${out}" /opt/bench/publishing
  docker exec -d "${LEAD}" sh -c "timeout 400 python3 /opt/bench/push_load.py \
    --clients ${DEPLOY_CLIENTS} --rate 5 --seconds 300 --channel demo.public.load \
    --until-file /opt/bench/stop --event '0:touch /opt/bench/publishing' > ${out}.part \
    && mv ${out}.part ${out}"
  for _ in $(seq 1 120); do
    docker exec "${LEAD}" test -e /opt/bench/publishing && break
    sleep 1
  done
  "$@"
  docker exec "${LEAD}" touch /opt/bench/stop
  for _ in $(seq 1 120); do
    docker exec "${LEAD}" test -e "${out}" && break
    sleep 1
  done
  docker cp "${LEAD}:${out}" "${WORK}/load-${name}.json"
}
rolling_deploy() {
  local started=${SECONDS}
  timeout 900 "${deploy[@]}" >"${WORK}/rolling-deploy.log" 2>&1 \
    || { tail -n 40 "${WORK}/rolling-deploy.log" >&2; die "the rolling deploy failed"; }
  echo $((SECONDS - started)) >"${WORK}/rolling-deploy.seconds"
}

revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
for size in "${sizes[@]}"; do
  say "steady: ${size} subscribers through both balancers"
  steady "${size}"
done
say "the deploy's effect: ${DEPLOY_CLIENTS} subscribers, 60 s without a deploy"
with_load steady sleep 60
say "the deploy's effect: ${DEPLOY_CLIENTS} subscribers through a rolling deploy"
with_load deploy rolling_deploy

mkdir -p bench/results
python bench/fleet_report.py "${WORK}" --revision "${revision}" --out "${RESULTS}" \
  --markdown docs/benchmarks-fleet.md
