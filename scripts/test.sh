#!/usr/bin/env bash
# Runs every test: lint, the sidecar's unit tests, and every Molecule
# scenario (each on Debian 12 and Debian 13). Brings up what it needs first
# (Docker engine, base images, pinned venv). Ends with one line
# "N passed, N failed" summing all suites.
#
#   scripts/test.sh                        everything
#   scripts/test.sh lint|unit|user|gates   one suite
#   scripts/test.sh molecule [S...]        Molecule scenarios (all, or those named)
#   scripts/test.sh lane ITEM...           the suites and scenarios named, in order
#
# Everything runs in two lanes side by side (each scenario's containers are
# its own): unit and then the scenarios whose tests time recoveries and
# capacity, one after another; beside them the user suite, the gates and
# lint side by side, then the other scenarios. MWS_TEST_LANES=1 runs them
# all in one.
#
# unit: fast tests without Docker, run twice: on the pinned toolchain
# (.venv) and on the oldest ansible-core the collection claims with Debian
# 12's aiohttp (.state/venv-oldest). user: the collection installed and run
# as users do, and scripts/demo.sh from the user's seat (tests/user/).
# gates: the ecosystem's judges of a collection (Galaxy's importer,
# antsibull-docs), on the built tarball and the tree.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "${PROJECT_ROOT}"

export PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 ANSIBLE_NOCOLOR=1
LOG_DIR="${STATE_DIR}/test-logs"
# Where a release would be published: a name that can never resolve.
STAND_IN_URL="https://example.invalid/mod_wsgi_ws_sidecar"
mkdir -p "${LOG_DIR}"
PASSED=0
FAILED=0

# Adds a pytest run's counts (from its closing summary line) to the totals.
# A run that failed without a countable failure counts as one failure.
count_pytest() {
  local name=$1 rc=$2 log=$3 summary p f e
  # pytest's closing line, e.g. "== 3 failed, 27 passed in 20.1s ==" (bare with -q).
  summary=$(grep -E '([0-9]+ (passed|failed|errors?)|no tests ran)[a-z0-9, ]* in [0-9.]+s' "${log}" | tail -n 1)
  p=$(grep -oE '[0-9]+ passed' <<<"${summary}" | cut -d' ' -f1)
  f=$(grep -oE '[0-9]+ failed' <<<"${summary}" | cut -d' ' -f1)
  e=$(grep -oE '[0-9]+ errors?' <<<"${summary}" | cut -d' ' -f1)
  p=${p:-0} f=$(( ${f:-0} + ${e:-0} ))
  if [ "${rc}" != 0 ] && [ "${f}" = 0 ]; then f=1; fi
  if [ "${p}" = 0 ] && [ "${f}" = 0 ]; then
    say "${name}: no tests ran"
    f=1
  fi
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  say "${name}: ${p} passed, ${f} failed${summary:+ (${summary//=/})}"
}

# One linter is one check.
count_check() {
  local name=$1 rc=$2 log=$3
  if [ "${rc}" = 0 ]; then
    PASSED=$((PASSED + 1))
    say "${name}: passed"
  else
    FAILED=$((FAILED + 1))
    say "${name}: FAILED"
    tail -n 40 "${log}" >&2
  fi
}

run_lint() {
  local log
  # ansible-lint puts ~/.ansible/collections before the project's own paths,
  # so a copy of this collection installed there would shadow the working
  # tree: it gets a home of its own.
  mkdir -p "${STATE_DIR}/lint-home"
  for check in "ruff check ." "ruff format --check ." "yamllint --strict ." "ansible-lint" \
    "antsibull-changelog lint"; do
    log="${LOG_DIR}/lint-${check%% *}-$(tr -c 'a-z' '-' <<<"${check}").log"
    HOME="${STATE_DIR}/lint-home" ${check} >"${log}" 2>&1
    count_check "lint: ${check}" $? "${log}"
  done
}

# Galaxy's importer on the release tarball, built as a publisher would with
# a stand-in URL, on both ends of the claimed ansible-core range; it fails
# on any error or warning it logs. The fleet example's community.general
# is importable beside it, as the example's requirements file installs it
# for users (the importer's ansible-lint resolves modules through it).
run_importer() {
  local tarball log venv version deps="${STATE_DIR}/importer-deps"
  log="${LOG_DIR}/gates-release.log"
  tarball=$(python scripts/release.py --repository "${STAND_IN_URL}" --issues "${STAND_IN_URL}/issues" \
    --output-path "${STATE_DIR}/release" 2>"${log}")
  count_check "gates: release tarball with a stand-in URL" $? "${log}"
  mkdir -p "${deps}/ansible_collections/community"
  ln -sfn "$(python -c 'import ansible_collections.community.general as m; print(m.__path__[0])')" \
    "${deps}/ansible_collections/community/general"
  for venv in "${GALAXY_VENV}" "${GALAXY_OLDEST_VENV}"; do
    log="${LOG_DIR}/gates-importer-$(basename "${venv}").log"
    (cd "${STATE_DIR}/release" && PATH="${venv}/bin:${PATH}" PYTHONPATH="${deps}" \
      "${venv}/bin/python" -m galaxy_importer.main "$(basename "${tarball}")") >"${log}" 2>&1
    rc=$?
    if [ ${rc} = 0 ] && grep -qE '^(WARNING|ERROR)' "${log}"; then rc=1; fi
    if [ ${rc} = 0 ] && ! grep -q 'Importer processing completed successfully' "${log}"; then rc=1; fi
    version=$("${venv}/bin/ansible" --version 2>/dev/null)
    count_check "gates: galaxy-importer (${version%%$'\n'*})" ${rc} "${log}"
  done
}

# ansible-test sanity on both ends of the claimed ansible-core range, side
# by side (scripts/sanity.sh): one check per version it reports.
run_sanity() {
  local log="${LOG_DIR}/gates-sanity.log" rc line name reported=0
  scripts/sanity.sh >"${log}" 2>&1
  rc=$?
  # Each line: "==> sanity (ansible [core X], N s): passed (log: ...)".
  while read -r line; do
    reported=$((reported + 1))
    name=${line#==> }
    name="${name%%): *})"
    [[ "${line}" == *"): passed "* ]]
    count_check "gates: ansible-test ${name}" $? "${log}"
  done < <(grep -E '^==> sanity \(' "${log}")
  if [ "${reported}" != 2 ] || { [ "${rc}" != 0 ] && ! grep -q FAILED "${log}"; }; then
    count_check "gates: ansible-test sanity ran on both versions" 1 "${log}"
  fi
}

# The ecosystem's own gates: Galaxy's importer, ansible-test sanity, and the
# docsite antsibull-docs builds (after lint-collection-docs).
run_gates() {
  local log
  run_importer
  run_sanity
  log="${LOG_DIR}/gates-docsite.log"
  python scripts/docs_site.py >"${log}" 2>&1
  count_check "gates: antsibull-docs lint-collection-docs and docsite" $? "${log}"
}

run_unit() {
  local venv log rc version
  for venv in "${VENV}" "${OLDEST_VENV}"; do
    log="${LOG_DIR}/unit-$(basename "${venv}").log"
    "${venv}/bin/pytest" tests -q --ignore=tests/user >"${log}" 2>&1
    rc=$?
    [ ${rc} = 0 ] || tail -n 60 "${log}" >&2
    # Read whole: ansible fails on a pipe closed after its first line.
    version=$("${venv}/bin/ansible" --version)
    count_pytest "unit tests (${version%%$'\n'*})" ${rc} "${log}"
  done
}

# The consumer's project and the demo side by side: each has containers of
# its own, and they overlap lint, the unit tests and the first scenarios'
# set-up, none of which time anything.
run_user() {
  local suites=(consumer demo) i log pids=() rc
  for i in "${!suites[@]}"; do
    log="${LOG_DIR}/user-${suites[i]}.log"
    say "user tests (${suites[i]}): running (log: ${log})"
    pytest "tests/user/test_${suites[i]}.py" -v >"${log}" 2>&1 &
    pids[i]=$!
  done
  for i in "${!suites[@]}"; do
    log="${LOG_DIR}/user-${suites[i]}.log"
    wait "${pids[i]}"
    rc=$?
    [ ${rc} = 0 ] || tail -n 80 "${log}" >&2
    # pytest's own summary gives each file's time.
    count_pytest "user tests, ${suites[i]}" ${rc} "${log}"
  done
}

# Copies Molecule's output to LOG, and writes to STEPS how long its converge
# and idempotence steps took, from its "[S > STEP] Executing" and
# "Executed" lines as they arrive.
log_step_times() {
  local log=$1 steps=$2 line step
  local -A began=() took=()
  : >"${steps}"
  while IFS= read -r line; do
    printf '%s\n' "${line}" >>"${log}"
    if [[ "${line}" =~ \>\ (converge|idempotence)\]\ (Executing|Executed) ]]; then
      step=${BASH_REMATCH[1]}
      if [ "${BASH_REMATCH[2]}" = Executing ]; then
        began[${step}]=${EPOCHREALTIME}
      elif [ -n "${began[${step}]:-}" ]; then
        took[${step}]=$(awk -v a="${began[${step}]}" -v b="${EPOCHREALTIME}" 'BEGIN { printf "%.0f", b - a }')
      fi
    fi
  done
  if [ -n "${took[converge]:-}" ]; then
    echo "first converge ${took[converge]} s, no-op re-run ${took[idempotence]:-?} s (both hosts)" >"${steps}"
  fi
}

run_scenario() {
  local scenario=$1 log="${LOG_DIR}/molecule-$1.log" started rc
  # Molecule's testinfra verifier passes silently when it finds no tests.
  if ! compgen -G "molecule/${scenario}/tests/test_*.py" >/dev/null; then
    say "molecule ${scenario}: no tests in molecule/${scenario}/tests"
    FAILED=$((FAILED + 1))
    return
  fi
  say "molecule ${scenario}: running (log: ${log})"
  started=${SECONDS}
  : >"${log}"
  molecule test -s "${scenario}" 2>&1 | log_step_times "${log}" "${LOG_DIR}/molecule-$1.steps"
  rc=${PIPESTATUS[0]}
  # The operator's two figures: both hosts converged from fresh containers,
  # and a run that changes nothing (Molecule's idempotence step).
  if [ -s "${LOG_DIR}/molecule-$1.steps" ]; then
    say "molecule ${scenario}: $(cat "${LOG_DIR}/molecule-$1.steps")"
  fi
  if grep -q "Skipping, no tests found" "${log}"; then
    say "molecule ${scenario}: the verifier found no tests"
    rc=1
  fi
  [ ${rc} = 0 ] || tail -n 80 "${log}" >&2
  count_pytest "molecule ${scenario} ($((SECONDS - started)) s)" ${rc} "${log}"
}

# Adds the closing "N passed, N failed" of a lane's log to the totals, and
# passes its other lines on.
add_lane_counts() {
  local lane_log=$1 counts
  grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "${lane_log}" >&2
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "${lane_log}" | tail -n 1)
  if [ -z "${counts}" ]; then
    say "a lane ended without its counts (see ${lane_log})"
    FAILED=$((FAILED + 1))
    return
  fi
  PASSED=$((PASSED + ${counts%% passed*}))
  FAILED=$((FAILED + $(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"${counts}")))
}

# The suites (lint, unit, user, gates) or scenarios named, one after
# another; A+B runs A and B side by side.
run_lane() {
  local item part parts pids logs part_log i
  for item in "$@"; do
    if [[ "${item}" == *+* ]]; then
      IFS=+ read -r -a parts <<<"${item}"
      pids=() logs=()
      for part in "${parts[@]:1}"; do
        part_log="${LOG_DIR}/lane-${part}.log"
        "$0" lane "${part}" >"${part_log}" 2>&1 &
        pids+=($!)
        logs+=("${part_log}")
      done
      run_lane "${parts[0]}"
      for i in "${!pids[@]}"; do
        wait "${pids[i]}"
        add_lane_counts "${logs[i]}"
      done
      continue
    fi
    case "${item}" in
      lint) run_lint ;;
      unit) run_unit ;;
      user) run_user ;;
      gates) run_gates ;;
      *) run_scenario "${item}" ;;
    esac
  done
}

# The scenarios whose tests time recoveries, capacity and timeouts, and
# vhost-tls, which evens the two lanes' lengths (docs/testing.md, Timings).
TIMED_SCENARIOS=(default unix-socket own-sidecar vhost-tls)

# Lint, the unit tests, the user suite, the gates and every scenario in two
# lanes run side by side (see the top), each lane a run of this script whose
# closing line adds to the totals. The unit tests open the timed lane, the
# user suite, the gates and lint the other, which evens the two lanes'
# lengths (docs/testing.md, Timings).
run_lanes() {
  # The user suite waits mostly on its containers, lint and the gates on the
  # CPU: side by side, they take little more than the longest of them.
  local timed=(unit) others=(user+gates+lint) scenario dir lane_log pid pids=() logs=()
  for dir in molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "${dir}")")
    if [[ " ${TIMED_SCENARIOS[*]} " == *" ${scenario} "* ]]; then
      timed+=("${scenario}")
    else
      others+=("${scenario}")
    fi
  done
  if [ "${MWS_TEST_LANES:-2}" = 1 ]; then
    run_lane "${others[@]}" "${timed[@]}"
    return
  fi
  for lane in "${timed[*]}" "${others[*]}"; do
    lane_log="${LOG_DIR}/lane-${lane%% *}.log"
    say "lane: ${lane} (log: ${lane_log})"
    # shellcheck disable=SC2086 # one word per suite
    "$0" lane ${lane} >"${lane_log}" 2>&1 &
    pids+=($!)
    logs+=("${lane_log}")
  done
  for pid in "${pids[@]}"; do wait "${pid}"; done
  for lane_log in "${logs[@]}"; do add_lane_counts "${lane_log}"; done
}

run_molecule() {
  local scenarios=("$@")
  if [ ${#scenarios[@]} = 0 ]; then
    for dir in molecule/*/molecule.yml; do scenarios+=("$(basename "$(dirname "${dir}")")"); done
  fi
  for scenario in "${scenarios[@]}"; do run_scenario "${scenario}"; done
}

ensure_testbed
started=${SECONDS}
case "${1:-all}" in
  lint) run_lint ;;
  unit) run_unit ;;
  user) run_user ;;
  gates) run_gates ;;
  molecule) shift; run_molecule "$@" ;;
  lane) shift; run_lane "$@" ;;
  all) run_lanes ;;
  *) die "unknown suite '$1' (lint, unit, user, gates, molecule, lane)" ;;
esac
say "total wall time: $((SECONDS - started)) s"
echo "${PASSED} passed, ${FAILED} failed"
[ "${FAILED}" = 0 ]
