#!/usr/bin/env bash
# Installs etcd (the etcd server and etcdctl) from Debian's packages, so the load generator can run
# the same workload against etcd (loadgen --target etcd://127.0.0.1:2379). Idempotent: does nothing
# when both binaries are already there. Needs root (CI runs as root) or sudo.
#
# The package's own service is kept from starting: a benchmark starts its own etcd cluster on its
# own ports and data directories, and a system etcd on 2379 would collide with it.
set -euo pipefail

if command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; then
  echo "etcd already installed: $(etcd --version 2>/dev/null | head -n1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-etcd.sh: needs root or sudo" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
packages="etcd-server etcd-client"

# A package list that does not know etcd-server yet (a fresh image) needs an update first.
if ! apt-cache show etcd-server >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi

# policy-rc.d answering 101 tells the maintainer scripts not to start services; restore whatever
# was there before, even on failure.
policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
  backup=$(mktemp)
  $SUDO cp -p "$policy" "$backup"
fi
restore() {
  if [ -n "$backup" ]; then $SUDO mv "$backup" "$policy"; else $SUDO rm -f "$policy"; fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
$SUDO chmod +x "$policy"

$SUDO apt-get install -y -qq --no-install-recommends $packages >/dev/null

# If an init system started it anyway, stop it (best effort: containers have no systemd).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  $SUDO systemctl stop etcd || true
  $SUDO systemctl disable etcd || true
fi

echo "installed: $(etcd --version | head -n1), $(etcdctl version 2>/dev/null | head -n1)"
