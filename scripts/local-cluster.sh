#!/usr/bin/env bash
# Starts (or stops) a local SofaDB cluster on 127.0.0.1 for trying it by hand.
#
#   scripts/local-cluster.sh start [N] [extra sofadb flags...]   # N = 3 (default) or 5
#   scripts/local-cluster.sh stop
#   scripts/local-cluster.sh status
#
# Replica i listens on 127.0.0.1:7000+i (peers), 8000+i (binary clients), 9000+i (HTTP); data and
# logs live under ${SOFA_DIR:-/tmp/sofadb-local}. Restarting with `start` resumes from the data.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${SOFA_DIR:-/tmp/sofadb-local}
cmd=${1:-}
shift || true

addrs() { # addrs BASE N -> 1=127.0.0.1:BASE+1,...
  local base=$1 n=$2 out="" i
  for i in $(seq 1 "$n"); do out="$out${out:+,}$i=127.0.0.1:$((base + i))"; done
  echo "$out"
}

case "$cmd" in
start)
  n=${1:-3}
  case "$n" in 3|5) shift || true ;; *) n=3 ;; esac
  mkdir -p "$dir"
  go build -o "$dir/sofadb" ./cmd/sofadb
  [ -s "$dir/cluster.key" ] || head -c 32 /dev/urandom > "$dir/cluster.key"
  for i in $(seq 1 "$n"); do
    nohup "$dir/sofadb" -id "$i" -peers "$(addrs 7000 "$n")" -clients "$(addrs 8000 "$n")" \
      -http "$(addrs 9000 "$n")" -data "$dir/data$i" -cluster-key "$dir/cluster.key" "$@" \
      >> "$dir/replica$i.log" 2>&1 &
    echo $! > "$dir/replica$i.pid"
  done
  for _ in $(seq 1 50); do
    if curl -sf "http://127.0.0.1:9001/status" 2>/dev/null | grep -q '"leader": [1-9]'; then
      echo "cluster of $n up: HTTP on 127.0.0.1:9001..900$n, binary on 127.0.0.1:8001..800$n, logs in $dir"
      exit 0
    fi
    sleep 0.2
  done
  echo "no leader after 10 s; see $dir/replica*.log" >&2
  exit 1
  ;;
stop)
  for f in "$dir"/replica*.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  ;;
status)
  for f in "$dir"/replica*.pid; do
    [ -e "$f" ] || continue
    i=$(basename "$f" .pid); i=${i#replica}
    curl -s "http://127.0.0.1:$((9000 + i))/status" | tr -d ' \n' |
      sed -E 's/^\{"id":([0-9]+),"role":"([a-z]+)".*"leader":([0-9]+),.*"commit":([0-9]+),"applied":([0-9]+),.*/replica \1: \2, leader \3, commit \4, applied \5/' ||
      echo "replica $i: down"
    echo
  done
  ;;
*)
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
