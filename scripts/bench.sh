#!/usr/bin/env bash
# make bench / make bench-full: installs etcd from Debian's packages where it can (the etcd scenarios
# are skipped, with the reason in the report, where it cannot), then runs sofabench with the
# arguments given. Everything it starts listens on loopback and lives under the report's directory.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null 2>&1; then
  scripts/install-etcd.sh || echo "bench: etcd could not be installed; its scenarios will be skipped" >&2
fi
exec ${GO:-go} run ./cmd/sofabench "$@"
