#!/usr/bin/env bash
# Placeholder until the benchmark issue: the replica server, the load generator and the report
# writer it needs do not exist yet. Fails loudly rather than pretending to measure.
echo "make bench: not built yet: needs cmd/sofadb (replica server), cmd/loadgen and bench/ (report writer)." >&2
exit 2
