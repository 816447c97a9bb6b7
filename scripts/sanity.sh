#!/usr/bin/env bash
# Runs `ansible-test sanity` on the collection with the pinned ansible-core
# (.venv) and the oldest one the collection claims (.state/venv-oldest), both
# at once (one per core of the 2-core machines), offline but for PyPI.
# Prints one line per ansible-core version, passed or FAILED, with its log;
# exits non-zero if any failed.
#
#   scripts/sanity.sh                 both versions
#   scripts/sanity.sh newest|oldest   one of them
#   scripts/sanity.sh both --test pylint ...   further arguments go to ansible-test
#
# What is tested: the collection as it ships, from the working copy as it is
# (the files ansible-test would see in place, uncommitted changes included,
# less galaxy.yml's build_ignore), plus its sanity configuration
# (tests/config.yml, tests/sanity/). The test bed (tests/, molecule/, bench/,
# scripts/) is not collection content, and is linted by ruff instead.
#
# Pythons: each ansible-test runs on its venv's Python, which is the controller
# for the single-version tests (pylint, validate-modules, ...): 3.12 and 3.11.
# The tests run per target Python (compile, import) run on the Pythons the
# modules meet, once each, at the two ends of the range: 3.11 (Debian 12) with the oldest
# ansible-core, 3.13 (Debian 13) with the newest; 3.12 between them would add
# time and find nothing new.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"

SANITY_DIR="${STATE_DIR}/sanity"
LOG_DIR="${STATE_DIR}/test-logs"
COLLECTION_PATH=ansible_collections/mod_wsgi_ws_sidecar/apache

# The collection's files as a release would hold them, one per line: the
# working copy's files as ansible-test lists them in a git checkout (tracked
# or new, not git-ignored, not deleted) that survive galaxy.yml's
# build_ignore, matched as ansible-galaxy does (fnmatch on the path and on
# each of its directories, plus its own default patterns), and the sanity
# configuration under tests/, which build_ignore drops from the tarball.
shipped_files() {
  local deleted="${SANITY_DIR}/deleted"
  git -C "${PROJECT_ROOT}" ls-files -z --deleted >"${deleted}" || return
  git -C "${PROJECT_ROOT}" ls-files -z --cached --others --exclude-standard \
    | "${VENV}/bin/python" -c '
import fnmatch, sys, yaml
galaxy = yaml.safe_load(open(sys.argv[2]))
patterns = ["*.pyc", "*.retry", "tests/output", "{namespace}-{name}-*.tar.gz".format(**galaxy)]
patterns += galaxy.get("build_ignore") or []
dirs = {"CVS", ".bzr", ".hg", ".git", ".svn", "__pycache__", ".tox"}
deleted = set(open(sys.argv[1], "rb").read().decode().split("\0"))
for path in sys.stdin.buffer.read().decode().split("\0"):
    if not path or path in deleted:
        continue
    if path == "tests/config.yml" or path.startswith("tests/sanity/"):
        print(path)
        continue
    parts = path.split("/")
    if any(part in dirs for part in parts[:-1]):
        continue
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if not any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in patterns):
        print(path)
' "${deleted}" "${PROJECT_ROOT}/galaxy.yml"
}

# A fresh copy of the files listed in FILES under ROOT/ansible_collections/
# (ansible-test finds namespace and name in the path). It gets a git
# repository of its own, without commits: ansible-test lists a tree's files
# with git when it finds a .git in it or above it, and above it is this
# repository, whose .gitignore hides .state.
lay_out() {
  local root=$1 files=$2
  rm -rf "${root}/ansible_collections"
  mkdir -p "${root}/${COLLECTION_PATH}"
  (cd "${PROJECT_ROOT}" && tr '\n' '\0' <"${files}" | tar --null -T - -cf -) \
    | tar -xf - -C "${root}/${COLLECTION_PATH}" || die "copying the collection failed"
  git -C "${root}/${COLLECTION_PATH}" init -q || die "git init in ${root}/${COLLECTION_PATH} failed"
}

# ansible-test makes a venv for each test and puts pip in it with pip's
# bootstrap script (get-pip), downloaded from a host that is not reachable
# here; ansible-test first looks for it in its cache,
# ~/.ansible/test/cache/get_pip_<version>.py, and says to save it there when
# the download fails. Saved there instead: a script doing what get-pip does
# (`pip install --upgrade --force-reinstall pip ARGS`), run by the same pip
# release from its wheel (as ensurepip runs pip), the wheel fetched from PyPI
# once. The pip version is the one ansible-test pins for its venvs.
ensure_pip_bootstrap() {
  local venv=$1 home=$2 version wheel_dir="$2/wheels" wheel script
  version=$("${venv}/bin/python" -c '
import types
from ansible_test._internal.python_requirements import get_venv_packages
packages = get_venv_packages(types.SimpleNamespace(version="3.11"))
assert list(packages) == ["pip"], packages
print(packages["pip"])') || die "could not read the pip version ansible-test pins (${venv})"
  wheel="${wheel_dir}/pip-${version}-py3-none-any.whl"
  if [ ! -f "${wheel}" ]; then
    mkdir -p "${wheel_dir}"
    "${venv}/bin/pip" download -q --no-deps --only-binary=:all: -d "${wheel_dir}" "pip==${version}" \
      >"${home}/pip-download.log" 2>&1 \
      || { tail -n 20 "${home}/pip-download.log" >&2; die "downloading pip ${version} failed"; }
  fi
  script="${home}/.ansible/test/cache/get_pip_${version//./_}.py"
  mkdir -p "$(dirname "${script}")"
  cat >"${script}.new" <<EOF
# Written by scripts/sanity.sh in place of pip's get-pip.py (see there).
import sys

sys.path.insert(0, "${wheel}")
from pip._internal.cli.main import main  # noqa: E402

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-index", "--find-links", "${wheel_dir}",
               "--upgrade", "--force-reinstall", *args, "pip"]))
EOF
  mv "${script}.new" "${script}"
}

# The real interpreter of a Python version from find_python, not a pyenv
# shim: ansible-test makes its venvs with the python3.X it finds on PATH, and
# the shim of a version that is not pyenv's selected one refuses to run.
real_python() {
  local python
  python=$(find_python "$1" "$2") || exit 1
  "${python}" -c 'import sys; print(sys.executable)' || die "${python} did not run"
}

# Runs ansible-test sanity from the venv VENV with the target Python TARGET
# ("default": the controller's) into LOG, in .state/sanity/NAME; further
# arguments go to ansible-test.
run_sanity() {
  local name=$1 venv=$2 target=$3 log=$4 root home target_dir="" started=${SECONDS} rc
  shift 4
  root="${SANITY_DIR}/${name}"
  home="${root}/home"
  mkdir -p "${home}"
  lay_out "${root}" "${SANITY_DIR}/files"
  ensure_pip_bootstrap "${venv}" "${home}"
  if [ "${target}" != default ]; then
    target_dir=$(dirname "${target#*@}")
  fi
  # Its own HOME: ansible-test keeps its venvs and the bootstrap script under
  # ~/.ansible/test; pip's cache stays the user's, shared by both runs.
  (
    cd "${root}/${COLLECTION_PATH}" || exit 1
    export PIP_CACHE_DIR HOME="${home}" PATH="${target_dir:+${target_dir}:}${PATH}"
    "${venv}/bin/ansible-test" sanity --color no \
      --controller origin:python=default --target-python "${target}" "$@"
  ) >"${log}" 2>&1
  rc=$?
  echo $((SECONDS - started)) >"${root}/seconds"
  return ${rc}
}

main() {
  local which=${1:-both} names=() venvs=() targets=() pids=() i rc failed=0 version target
  [ $# -gt 0 ] && shift
  case "${which}" in
    both|newest|oldest) ;;
    *) die "unknown version '${which}' (both, newest, oldest)" ;;
  esac
  export PIP_CACHE_DIR="${PIP_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/pip}"
  mkdir -p "${SANITY_DIR}" "${LOG_DIR}"
  # The venvs side by side, as ensure_testbed makes them (minutes each on a
  # new machine, nothing once made).
  if [ "${which}" != oldest ]; then
    ensure_venv &
    pids+=($!)
    target=$(real_python 3.13 3.14) || exit 1
    names+=(newest) venvs+=("${VENV}") targets+=("3.13@${target}")
  fi
  if [ "${which}" != newest ]; then
    ensure_oldest_venv &
    pids+=($!)
    names+=(oldest) venvs+=("${OLDEST_VENV}") targets+=(default)
  fi
  for i in "${!pids[@]}"; do
    wait "${pids[i]}" || die "making the venvs failed (see the messages above)"
  done
  pids=()
  shipped_files >"${SANITY_DIR}/files" || die "listing the collection's files failed"
  # Without the shellcheck program, ansible-test skips its test of shell
  # scripts with a mere warning.
  if grep -q '\.sh$' "${SANITY_DIR}/files" && ! command -v shellcheck >/dev/null; then
    say "installing shellcheck (Debian's) for the collection's shell scripts"
    apt_install shellcheck
  fi
  for i in "${!venvs[@]}"; do
    run_sanity "${names[i]}" "${venvs[i]}" "${targets[i]}" "${LOG_DIR}/sanity-${names[i]}.log" "$@" &
    pids[i]=$!
  done
  for i in "${!venvs[@]}"; do
    wait "${pids[i]}"
    rc=$?
    # Read whole: ansible fails on a pipe closed after its first line.
    version=$("${venvs[i]}/bin/ansible" --version 2>/dev/null)
    version="${version%%$'\n'*}, $(cat "${SANITY_DIR}/${names[i]}/seconds" 2>/dev/null) s"
    if [ "${rc}" = 0 ]; then
      say "sanity (${version}): passed (log: ${LOG_DIR}/sanity-${names[i]}.log)"
    else
      failed=1
      grep -E '^(ERROR|FATAL)' "${LOG_DIR}/sanity-${names[i]}.log" | tail -n 40 >&2
      say "sanity (${version}): FAILED (log: ${LOG_DIR}/sanity-${names[i]}.log)"
    fi
  done
  [ "${failed}" = 0 ]
}

main "$@"
