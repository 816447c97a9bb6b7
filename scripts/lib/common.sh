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

# The venv holds the pinned toolchain (requirements-dev.txt); rebuilt when
# the pin file changes.
ensure_venv() {
  local stamp="${VENV}/.requirements.sha256"
  local want
  want=$(sha256sum "${PROJECT_ROOT}/requirements-dev.txt" | cut -d' ' -f1)
  if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
    return
  fi
  say "creating venv ${VENV} with the pinned toolchain"
  mkdir -p "${STATE_DIR}"
  python3 -m venv "${VENV}"
  if ! "${VENV}/bin/pip" install -r "${PROJECT_ROOT}/requirements-dev.txt" \
      >"${STATE_DIR}/pip.log" 2>&1; then
    grep -v '^WARNING: Location' "${STATE_DIR}/pip.log" | tail -n 30 >&2
    die "pip install failed; see ${STATE_DIR}/pip.log"
  fi
  echo "${want}" >"${stamp}"
}

activate_venv() {
  # shellcheck disable=SC1091
  . "${VENV}/bin/activate"
  export ANSIBLE_CONFIG="${PROJECT_ROOT}/ansible.cfg"
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

ensure_testbed() {
  ensure_docker
  ensure_venv
  ensure_images
  activate_venv
}
