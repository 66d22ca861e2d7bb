#!/usr/bin/env bash
# Fails when any Go file is not gofmt-formatted, or go vet or staticcheck finds a problem. staticcheck
# is pinned in go.mod (a tool dependency: go get -tool), so `go tool` fetches exactly that version.
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go tool staticcheck ./...
