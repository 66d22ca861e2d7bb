#!/usr/bin/env bash
# Starts, inspects and stops a local SofaDB cluster on 127.0.0.1 for trying it by hand.
#
#   scripts/local-cluster.sh [--dir DIR] [--base PORT] start [N] [extra sofadb flags...]   # N = 3 (default) or 5
#   scripts/local-cluster.sh [--dir DIR] [--base PORT] status     # one line per replica: pid, role, leader, slots
#   scripts/local-cluster.sh [--dir DIR] [--base PORT] leader     # the leader's id and pid: kill -9 $(... leader | cut -d' ' -f2)
#   scripts/local-cluster.sh [--dir DIR] [--base PORT] stop
#   scripts/local-cluster.sh [--dir DIR] [--base PORT] --faults start [N]   # peer links through cmd/faultproxy
#
# Replica i listens on 127.0.0.1:BASE+i (peers), BASE+1000+i (binary clients), BASE+2000+i (HTTP),
# and with --debug also on BASE+3000+i (pprof: go tool pprof http://127.0.0.1:BASE+3000+i/debug/pprof/profile);
# BASE is 7000 unless --base (or SOFA_BASE) says otherwise. Data, logs and pid files live under DIR
# (--dir, SOFA_DIR, default /tmp/sofadb-local); two clusters coexist with different DIR and BASE.
# With --faults every peer link goes through one faultproxy process (pair i<j listens on
# BASE+4000+10i+j, control API on BASE+3990): go run ./cmd/faultproxy set -control
# 127.0.0.1:BASE+3990 -from 1 -to 2 -both -delay 20ms, ... heal, show. The choice sticks to DIR.
# `start` starts only the replicas that are not running (a killed one resumes from its data).
# SOFADB_BIN=path makes `start` use that replica binary instead of building ./cmd/sofadb.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${SOFA_DIR:-/tmp/sofadb-local}
base=${SOFA_BASE:-7000}
debug= faults=
while [ $# -gt 0 ]; do
  case "$1" in
  --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
  --base) base=${2:?--base needs a port}; shift 2 ;;
  --debug) debug=1; shift ;;
  --faults) faults=1; shift ;;
  *) break ;;
  esac
done
cmd=${1:-}
shift || true

addrs() { # addrs BASE N -> 1=127.0.0.1:BASE+1,...
  local b=$1 n=$2 out="" i
  for i in $(seq 1 "$n"); do out="$out${out:+,}$i=127.0.0.1:$((b + i))"; done
  echo "$out"
}

# alive I: replica I's pid file names a running sofadb process (not a recycled pid).
alive() {
  local f="$dir/replica$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null && grep -q sofadb "/proc/$pid/cmdline" 2>/dev/null
}

size() { cat "$dir/size" 2>/dev/null || echo 3; }

# peers_of I N: the -peers list replica I gets: everyone's own address, except that with --faults
# the peers it dials (higher ids) are at the proxy's listener for that pair.
peers_of() {
  local me=$1 n=$2 out="" q addr
  for q in $(seq 1 "$n"); do
    addr=127.0.0.1:$((base + q))
    if [ -n "$faults" ] && [ "$q" -gt "$me" ]; then addr=127.0.0.1:$((base + 4000 + 10 * me + q)); fi
    out="$out${out:+,}$q=$addr"
  done
  echo "$out"
}

proxy_alive() {
  local f="$dir/faultproxy.pid"
  [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && grep -q faultproxy "/proc/$(cat "$f")/cmdline" 2>/dev/null
}

status_line() { # status_line I
  local i=$1 json
  if ! alive "$i"; then
    echo "replica $i: down"
    return
  fi
  json=$(curl -s --max-time 2 "http://127.0.0.1:$((base + 2000 + i))/status" | tr -d ' \n' || true)
  if [ -z "$json" ]; then
    echo "replica $i: pid $(cat "$dir/replica$i.pid"), not answering"
    return
  fi
  field() { echo "$json" | sed -nE "s/.*\"$1\":\"?([a-z0-9]+)\"?[,}].*/\1/p"; } # role, leader, commit and applied each occur once, at the top level
  echo "replica $i: pid $(cat "$dir/replica$i.pid"), $(field role), leader $(field leader), commit $(field commit), applied $(field applied)"
}

case "$cmd" in
start)
  n=${1:-$(size)}
  case "$n" in 3|5) shift || true ;; *) n=$(size) ;; esac
  mkdir -p "$dir"
  if [ -s "$dir/size" ] && [ "$(size)" != "$n" ] && [ -d "$dir/data1" ]; then
    echo "$dir holds a cluster of $(size); stop it and remove $dir to start one of $n" >&2
    exit 2
  fi
  echo "$n" > "$dir/size"
  [ -e "$dir/faults" ] && faults=1
  if [ -n "${SOFADB_BIN:-}" ]; then # a prebuilt replica binary (A/B comparisons of two builds)
    cp "$SOFADB_BIN" "$dir/sofadb"
  else
    go build -o "$dir/sofadb" ./cmd/sofadb
  fi
  if [ -n "$faults" ]; then
    touch "$dir/faults"
    if ! proxy_alive; then
      go build -o "$dir/faultproxy" ./cmd/faultproxy
      links=()
      for i in $(seq 1 "$n"); do
        for j in $(seq $((i + 1)) "$n"); do
          links+=(-link "$i:$j=127.0.0.1:$((base + 4000 + 10 * i + j)),127.0.0.1:$((base + j))")
        done
      done
      nohup "$dir/faultproxy" serve -control "127.0.0.1:$((base + 3990))" "${links[@]}" >> "$dir/faultproxy.log" 2>&1 &
      echo $! > "$dir/faultproxy.pid"
    fi
  fi
  [ -s "$dir/cluster.key" ] || head -c 32 /dev/urandom > "$dir/cluster.key"
  started=0
  for i in $(seq 1 "$n"); do
    if alive "$i"; then
      echo "replica $i already running (pid $(cat "$dir/replica$i.pid"))"
      continue
    fi
    nohup "$dir/sofadb" -id "$i" -peers "$(peers_of "$i" "$n")" -clients "$(addrs $((base + 1000)) "$n")" \
      -http "$(addrs $((base + 2000)) "$n")" -data "$dir/data$i" -cluster-key "$dir/cluster.key" \
      ${debug:+-debug-addr "127.0.0.1:$((base + 3000 + i))"} "$@" \
      >> "$dir/replica$i.log" 2>&1 &
    echo $! > "$dir/replica$i.pid"
    started=$((started + 1))
  done
  for _ in $(seq 1 50); do
    for i in $(seq 1 "$n"); do
      if curl -sf --max-time 1 "http://127.0.0.1:$((base + 2000 + i))/status" 2>/dev/null | grep -q '"leader": [1-9]'; then
        echo "cluster of $n up ($started started): HTTP on 127.0.0.1:$((base + 2001))..$((base + 2000 + n)), binary on 127.0.0.1:$((base + 1001))..$((base + 1000 + n)), logs in $dir"
        exit 0
      fi
    done
    sleep 0.2
  done
  echo "no leader after 10 s; see $dir/replica*.log" >&2
  exit 1
  ;;
stop)
  for i in $(seq 1 "$(size)"); do
    if alive "$i"; then
      pid=$(cat "$dir/replica$i.pid")
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "replica $i (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
        kill -9 "$pid" 2>/dev/null || true
      fi
      echo "replica $i stopped"
    fi
    rm -f "$dir/replica$i.pid"
  done
  if proxy_alive; then
    kill "$(cat "$dir/faultproxy.pid")"
    echo "fault proxy stopped"
  fi
  rm -f "$dir/faultproxy.pid"
  ;;
status)
  for i in $(seq 1 "$(size)"); do status_line "$i"; done
  ;;
leader)
  for i in $(seq 1 "$(size)"); do
    alive "$i" || continue
    if curl -s --max-time 2 "http://127.0.0.1:$((base + 2000 + i))/status" | grep -q '"role": *"leader"'; then
      echo "$i $(cat "$dir/replica$i.pid")"
      exit 0
    fi
  done
  echo "no replica leads" >&2
  exit 1
  ;;
*)
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
