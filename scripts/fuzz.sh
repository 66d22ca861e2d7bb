#!/usr/bin/env bash
# Runs every Fuzz target in the module for a fixed number of executions (FUZZ_EXECS). Counts, not
# durations: `go test -fuzz` with a time budget fails spuriously with "context deadline exceeded" on
# Go 1.26 here. New corpus entries that crash are written to testdata/fuzz and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
execs=${FUZZ_EXECS:-200000}
status=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "== $pkg $target ($execs executions)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "${execs}x" "$pkg"; then
      status=1
    fi
  done
done
exit $status
