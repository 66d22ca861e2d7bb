#!/usr/bin/env bash
# The large-value attack of issue 12, as a repeatable experiment: a fresh local 3-replica cluster,
# a light open-loop load of LIGHT_RATE writes/s (128 B values) for 30 s and, from 5 s into it, a
# burst of BURST_RATE ops/s of BURST_VALUE-byte values from 4 pipelining connections at the leader
# for 20 s. It prints, per replica, the peak RSS (all, and anonymous: the heap, not mapped files) and the leader changes it saw, and the light
# load's latency and completion during the attack.
#
#   scripts/overload.sh [--keep] TAG [extra sofadb flags...]
#   scripts/overload.sh --restart TAG [extra sofadb flags...]
#
# --restart is issue 12's item 8 instead: replica 3 is stopped, about 80 MB of 60 KB values are
# written without it, and it is restarted beside the light load (LIGHT_RATE 1,000 here): it
# needs a snapshot, and the others must keep their leader while it installs one.
#
# Results go to /tmp/overload-TAG (replica logs, /metrics at the end, both loadgen runs). Ports:
# OVERLOAD_BASE (7300) as local-cluster.sh's --base. PROFILE=1 also saves the leader's heap and CPU
# profiles from the middle of the burst (heap.pb.gz, cpu.pb.gz). Not part of `make test`: it takes about 45 s
# and the machine's noise moves its figures; run it twice before trusting one.
set -euo pipefail
cd "$(dirname "$0")/.."
keep= restart=
[ "${1:-}" = --keep ] && { keep=1; shift; }
[ "${1:-}" = --restart ] && { restart=1; shift; }
tag=${1:?usage: scripts/overload.sh [--keep] TAG [sofadb flags...]}
shift
base=${OVERLOAD_BASE:-7300}
light_rate=${LIGHT_RATE:-2000}
[ -n "$restart" ] && light_rate=${LIGHT_RATE:-1000}
burst_rate=${BURST_RATE:-1500}
burst_value=${BURST_VALUE:-61440}
out=/tmp/overload-$tag
debug=${PROFILE:+--debug}
cl() { scripts/local-cluster.sh --dir "$out/c" --base "$base" $debug "$@"; }

cl stop >/dev/null 2>&1 || true
rm -rf "$out"
mkdir -p "$out"
go build -o "$out/loadgen" ./cmd/loadgen
cl start 3 "$@" >/dev/null
trap 'cl stop >/dev/null 2>&1 || true' EXIT
leader=$(cl leader | cut -d' ' -f1)
if [ -n "$restart" ]; then
  if [ "$leader" = 3 ]; then # replica 3 is the one restarted: move the leadership off it
    kill "$(cat "$out/c/replica3.pid")"; sleep 1; cl start 3 "$@" >/dev/null; leader=$(cl leader | cut -d' ' -f1)
  fi
  kill "$(cat "$out/c/replica3.pid")"
  "$out/loadgen" --target "sofa://127.0.0.1:$((base + 1000 + leader))" --rate 300 --duration 12s --warmup 0s \
    --value-size "$burst_value" --keys 1300 --fail-fast-after -1s --max-lag-p99 1s --quiet 2> "$out/fill.log" || true
fi
targets="127.0.0.1:$((base + 1001)),127.0.0.1:$((base + 1002)),127.0.0.1:$((base + 1003))"
[ -n "$restart" ] && targets="127.0.0.1:$((base + 1001)),127.0.0.1:$((base + 1002))" # replica 3 is down at the start

# RSS sampler: the peak VmRSS of each replica, every 200 ms, until told to stop.
(
  declare -A peak anon
  while [ ! -e "$out/stop-sampling" ]; do
    for i in 1 2 3; do
      pid=$(cat "$out/c/replica$i.pid" 2>/dev/null) || continue
      read -r kb akb < <(awk '/^VmRSS/ {r = $2} /^RssAnon/ {a = $2} END {print r + 0, a + 0}' "/proc/$pid/status" 2>/dev/null) || continue
      [ -n "$kb" ] && [ "$kb" -gt "${peak[$i]:-0}" ] && peak[$i]=$kb
      [ -n "$akb" ] && [ "$akb" -gt "${anon[$i]:-0}" ] && anon[$i]=$akb
    done
    sleep 0.2
  done
  for i in 1 2 3; do echo "$i ${peak[$i]:-0} ${anon[$i]:-0}"; done > "$out/rss-peak"
) &
sampler=$!

"$out/loadgen" --target "sofa://$targets" --rate "$light_rate" --duration 30s --warmup 0s \
  --value-size 128 --fail-fast-after -1s --quiet --out "$out/light" 2> "$out/light.log" &
light=$!
sleep 5
if [ -n "$restart" ]; then
  cl start 3 "$@" >/dev/null || true # returns once a leader is known; replica 3 catches up behind it
  restarted=$(date +%s.%N)
  for _ in $(seq 1 250); do # wait for replica 3 to catch up with the leader (at most 25 s)
    a3=$(curl -s --max-time 1 "http://127.0.0.1:$((base + 2003))/status" | tr -d ' \n' | sed -nE 's/.*"applied":([0-9]+).*/\1/p')
    cl=$(curl -s --max-time 1 "http://127.0.0.1:$((base + 2000 + leader))/status" | tr -d ' \n' | sed -nE 's/.*"commit":([0-9]+).*/\1/p')
    if [ -n "$a3" ] && [ -n "$cl" ] && [ "$a3" -ge $((cl - 100)) ] && [ "$a3" -gt 0 ]; then
      echo "replica 3 caught up (applied $a3, leader's commit $cl) $(awk -v a="$(date +%s.%N)" -v b="$restarted" 'BEGIN { printf "%.1f", a - b }') s after its restart" > "$out/caught-up"
      break
    fi
    sleep 0.1
  done
  wait "$light" || true
elif [ -n "${PROFILE:-}" ]; then # PROFILE=1: the leader's heap 10 s into the burst and 5 s of its CPU
  (sleep 10; curl -s "http://127.0.0.1:$((base + 3000 + leader))/debug/pprof/heap" > "$out/heap.pb.gz"
   curl -s "http://127.0.0.1:$((base + 3000 + leader))/debug/pprof/profile?seconds=5" > "$out/cpu.pb.gz") &
fi
if [ -z "$restart" ]; then
  "$out/loadgen" --target "sofa://127.0.0.1:$((base + 1000 + leader))" --rate "$burst_rate" \
    --duration 20s --warmup 0s --value-size "$burst_value" --connections 4 --keys 1000 \
    --fail-fast-after -1s --max-lag-p99 1s --quiet --out "$out/burst" 2> "$out/burst.log" || true
fi
wait "$light" || true
touch "$out/stop-sampling"
wait "$sampler"

for i in 1 2 3; do
  curl -s --max-time 5 "http://127.0.0.1:$((base + 2000 + i))/metrics" > "$out/metrics$i.txt" || true
done
metric() { awk -v m="$1" '$1 == m {print $2}' "$2"; }
# leader_changes LOG: how many times the replica learned of a leader other than the last one it
# knew (not its first, and not a leader lost and found again: a follower that hears nothing for an
# election timeout logs "to=0", and the same leader again when its heartbeats get through).
leader_changes() {
  grep 'msg="leader changed"' "$1" | sed -nE 's/.* to=([0-9]+) .*/\1/p' |
    awk '$1 != 0 { if (last != "" && $1 != last) n++; last = $1 } END { print n + 0 }'
}
echo "== overload $tag: leader was $leader; sofadb flags: ${*:-(defaults)}"
for i in 1 2 3; do
  printf 'replica %s: RSS peak %4d MB (anonymous %4d MB), new leaders seen %2d (leader lost %2d times), campaigns %s, pre-votes %s, resent accepts %s\n' \
    "$i" $(($(awk -v i="$i" '$1 == i {print $2}' "$out/rss-peak") / 1024)) $(($(awk -v i="$i" '$1 == i {print $3}' "$out/rss-peak") / 1024)) \
    "$(leader_changes "$out/c/replica$i.log")" "$(grep -c 'msg="leader changed".* to=0 ' "$out/c/replica$i.log" || true)" \
    "$(metric sofadb_campaigns_total "$out/metrics$i.txt")" "$(metric sofadb_pre_votes_total "$out/metrics$i.txt")" \
    "$(metric sofadb_resent_accepts_total "$out/metrics$i.txt")"
done
summ() { # summ DIR: one line from a loadgen summary.json
  python3 - "$1/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
op = s.get("ops", {}).get("put") or next(iter(s.get("ops", {}).values()), {})
ms = lambda ns: "%.1f ms" % (ns / 1e6)
print("offered %.0f/s, completed %.0f/s, errors %s, p50 %s, p99 %s, max %s" % (
    s["target_ops_per_sec"], s["completed_ops_per_sec"], op.get("errors_by_class", {}),
    ms(op.get("p50_ns", 0)), ms(op.get("p99_ns", 0)), ms(op.get("max_ns", 0))))
EOF
}
echo "light load: $(summ "$out/light")"
if [ -n "$restart" ]; then
  cat "$out/caught-up" 2>/dev/null || echo "replica 3 did not catch up within 25 s"
  echo "replica 3 installed $(metric sofadb_snapshots_installed_total "$out/metrics3.txt") snapshots"
else
  echo "burst:      $(summ "$out/burst")"
fi
[ -n "$keep" ] && { trap - EXIT; echo "cluster left running in $out/c (base $base)"; }
exit 0
