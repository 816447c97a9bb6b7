# Shared helpers for the project's scripts: paths, logging, and the test bed
# (Docker engine, locally built base images, pinned Python venv).
# Sourced, not run.

PROJECT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="${PROJECT_ROOT}/.venv"
STATE_DIR="${PROJECT_ROOT}/.state"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian's engine started by hand: the machines have only a docker client
# on PATH and no engine running at start.
ensure_docker() {
  if docker info >/dev/null 2>&1; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "a running Docker engine is needed (start dockerd, or run as root so this script can)"
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing the Docker engine (Debian's docker.io)"
    apt_install docker.io
  fi
  say "starting dockerd"
  mkdir -p "${STATE_DIR}"
  nohup dockerd >"${STATE_DIR}/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  die "dockerd did not come up in 60 s; see ${STATE_DIR}/dockerd.log"
}

APT_UPDATED=
apt_install() {
  local log="${STATE_DIR}/apt.log"
  mkdir -p "${STATE_DIR}"
  if [ -z "${APT_UPDATED}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >"${log}" 2>&1 \
      || { tail -n 20 "${log}" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"${log}" 2>&1 \
    || { tail -n 20 "${log}" >&2; die "apt-get install $* failed"; }
}

# A Python interpreter whose version is at least MIN and below BELOW
# ("3.12" "4"): python3 first, then the pyenv versions the machines carry
# (pyenv's own shims refuse until a version is selected, so they are tried,
# not trusted).
find_python() {
  local min=$1 below=$2 candidate root
  root=$(pyenv root 2>/dev/null || true)
  for candidate in python3 ${root:+"${root}"/versions/*/bin/python3}; do
    if "${candidate}" -c "import sys
v = sys.version_info[:2]
sys.exit(not (tuple(map(int, '${min}'.split('.'))) <= v < tuple(map(int, '${below}'.split('.')))))" \
        2>/dev/null; then
      echo "${candidate}"
      return
    fi
  done
  die "no Python >= ${min} and < ${below} found (python3, or a pyenv version)"
}

# Creates (or refreshes) the venv DIR from the pin file REQUIREMENTS with an
# interpreter from find_python MIN BELOW; rebuilt only when the pins or the
# interpreter change.
ensure_pinned_venv() {
  local dir=$1 requirements=$2 min=$3 below=$4 python want stamp="$1/.requirements.sha256"
  python=$(find_python "${min}" "${below}")
  want=$( { sha256sum "${requirements}" | cut -d' ' -f1; "${python}" --version; } | sha256sum | cut -d' ' -f1)
  if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
    return
  fi
  local log="${STATE_DIR}/pip-$(basename "${dir}").log"
  say "creating venv ${dir} ($("${python}" --version)) from $(basename "${requirements}")"
  mkdir -p "${STATE_DIR}"
  rm -rf "${dir}"
  "${python}" -m venv "${dir}"
  if ! "${dir}/bin/pip" install -r "${requirements}" >"${log}" 2>&1; then
    grep -v '^WARNING: Location' "${log}" | tail -n 30 >&2
    die "pip install failed; see ${log}"
  fi
  echo "${want}" >"${stamp}"
}

# The pinned toolchain (requirements-dev.txt): the current ansible release,
# whose ansible-core needs Python 3.12 or later.
ensure_venv() {
  ensure_pinned_venv "${VENV}" "${PROJECT_ROOT}/requirements-dev.txt" 3.12 4
}

# The oldest ansible-core the collection claims (requirements-oldest.txt),
# on the Python of Debian 12 (3.11), where operators often stop; its aiohttp
# is Debian 12's, for the sidecar's unit tests.
OLDEST_VENV="${STATE_DIR}/venv-oldest"
ensure_oldest_venv() {
  ensure_pinned_venv "${OLDEST_VENV}" "${PROJECT_ROOT}/requirements-oldest.txt" 3.11 3.12
}

# Galaxy's importer (galaxy-importer), once per end of the ansible-core
# range the collection claims: it pins an ansible-lint that the pinned
# toolchain's does not match, so each has a venv of its own.
GALAXY_VENV="${STATE_DIR}/venv-galaxy"
GALAXY_OLDEST_VENV="${STATE_DIR}/venv-galaxy-oldest"
ensure_galaxy_venvs() {
  ensure_pinned_venv "${GALAXY_VENV}" "${PROJECT_ROOT}/requirements-galaxy.txt" 3.12 4
  ensure_pinned_venv "${GALAXY_OLDEST_VENV}" "${PROJECT_ROOT}/requirements-galaxy-oldest.txt" 3.11 3.12
}

# The repository is the collection mod_wsgi_ws_sidecar.apache; playbooks
# here name the role by its fully qualified name, as users do, and find it
# through this link (ansible.cfg's collections_path, Molecule's env).
DEV_COLLECTIONS="${STATE_DIR}/collections"
ensure_dev_collection() {
  local link="${DEV_COLLECTIONS}/ansible_collections/mod_wsgi_ws_sidecar/apache"
  if [ "$(readlink "${link}" 2>/dev/null)" != "${PROJECT_ROOT}" ]; then
    mkdir -p "$(dirname "${link}")"
    ln -sfn "${PROJECT_ROOT}" "${link}"
  fi
}

activate_venv() {
  # shellcheck disable=SC1091
  . "${VENV}/bin/activate"
  export ANSIBLE_CONFIG="${PROJECT_ROOT}/ansible.cfg"
  ensure_dev_collection
}

# Starts NAME from IMAGE as a systemd container without --privileged (see
# scripts/images/build.sh), replacing any container of that name, and waits
# until systemd is up. Further arguments go to docker run (a published port).
start_systemd_container() {
  local name=$1 image=$2 state=
  shift 2
  docker rm -f "${name}" >/dev/null 2>&1 || true
  docker run -d --name "${name}" --hostname "${name}" \
    --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    "$@" "${image}" >/dev/null
  for _ in $(seq 1 60); do
    state=$(docker exec "${name}" systemctl is-system-running 2>/dev/null || true)
    case "${state}" in running|degraded) return ;; esac
    sleep 1
  done
  die "systemd in ${name} did not come up (${state})"
}

ensure_images() {
  "${PROJECT_ROOT}/scripts/images/build.sh" bookworm trixie
}

# The venvs and the images are downloads and unpacking, independent of one
# another once the engine runs: made side by side (about 4 minutes less on a
# new machine than one after another).
ensure_testbed() {
  local pids=() pid
  ensure_docker
  ensure_venv &
  pids+=($!)
  ensure_oldest_venv &
  pids+=($!)
  ensure_images &
  pids+=($!)
  ensure_galaxy_venvs &
  pids+=($!)
  for pid in "${pids[@]}"; do
    wait "${pid}" || die "setting up the test bed failed (see the messages above)"
  done
  activate_venv
}
