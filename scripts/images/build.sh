#!/usr/bin/env bash
# Builds the systemd Debian base images the test containers run, without a
# registry: debootstrap a minimal root file system and `docker import` it.
# An image is rebuilt only when this recipe changes (its label carries the
# recipe's hash).
# Usage: scripts/images/build.sh SUITE...   (bookworm, trixie)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

PACKAGES=python3,ca-certificates,systemd,systemd-sysv,dbus,iproute2,procps,sudo
RECIPE_HASH=$( { cat "$0"; echo "${PACKAGES}"; } | sha256sum | cut -c1-16)

# The machine's own Debian mirror (the only one reachable here).
debian_mirror() {
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | head -n1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

build_image() {
  local suite=$1 tag="mod-wsgi-ws-sidecar/debian:$1"
  local have
  have=$(docker image inspect -f '{{ index .Config.Labels "recipe" }}' "${tag}" 2>/dev/null || true)
  if [ "${have}" = "${RECIPE_HASH}" ]; then
    return
  fi
  local rootfs
  rootfs=$(mktemp -d)
  say "building ${tag} with debootstrap (about a minute)"
  debootstrap --variant=minbase --include="${PACKAGES}" "${suite}" "${rootfs}" "$(debian_mirror)" \
    >"${rootfs}.log" 2>&1 || { tail -n 20 "${rootfs}.log" >&2; die "debootstrap ${suite} failed"; }
  # Trust the host's CA bundle so pip inside the container can reach PyPI.
  cp /etc/ssl/certs/ca-certificates.crt "${rootfs}/usr/local/share/host-ca-bundle.crt"
  # A container has no console to log in on; these units only slow boot.
  rm -f "${rootfs}"/etc/systemd/system/getty.target.wants/* \
        "${rootfs}"/etc/systemd/system/multi-user.target.wants/getty.target
  local previous
  previous=$(docker image inspect -f '{{ .Id }}' "${tag}" 2>/dev/null || true)
  tar -C "${rootfs}" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
    -c "LABEL recipe=${RECIPE_HASH}" - "${tag}" >/dev/null
  rm -rf "${rootfs}" "${rootfs}.log"
  # The image of the old recipe is no use now; keep it only while a container runs it.
  [ -z "${previous}" ] || docker rmi "${previous}" >/dev/null 2>&1 || true
}

[ $# -gt 0 ] || die "usage: $0 SUITE..."
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
# The builds are mostly downloads and unpacking: run them side by side.
pids=()
for suite in "$@"; do
  build_image "${suite}" &
  pids+=($!)
done
for pid in "${pids[@]}"; do
  wait "${pid}" || die "building an image failed"
done
