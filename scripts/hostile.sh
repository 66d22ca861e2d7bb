#!/usr/bin/env bash
# Issue 12's connection attacks as a repeatable experiment: a fresh local 3-replica cluster and a
# background load of RATE writes/s (2,000; 128 B values, open loop, at all three replicas) for
# 25 s; from 5 s into it, for 15 s, one attack:
#
#   scripts/hostile.sh none         # no attack: the baseline of the same run length
#   scripts/hostile.sh idle         # 2,000 silent connections held on the leader's binary client port
#   scripts/hostile.sh garbage      # about 1,000 connections a second sending garbage to the leader's client port
#   scripts/hostile.sh peerjam      # 64 silent connections to every peer port, redialled when dropped,
#                                   # while a follower is restarted and must rejoin
#
# It prints the background load's completion, errors and latency (p50, p99, max), the leader
# changes the replicas saw, and their log lines. Results in /tmp/hostile-ATTACK. Ports: HOSTILE_BASE
# (7700) as local-cluster.sh's --base. Not part of `make test` (the e2e tests assert each attack's
# outcome in seconds); run it twice before trusting a figure.
set -euo pipefail
cd "$(dirname "$0")/.."
attack=${1:?usage: scripts/hostile.sh none|idle|garbage|peerjam}
base=${HOSTILE_BASE:-7700}
rate=${RATE:-2000}
out=/tmp/hostile-$attack
cl() { scripts/local-cluster.sh --dir "$out/c" --base "$base" "$@"; }
cl stop >/dev/null 2>&1 || true
rm -rf "$out"
mkdir -p "$out"
go build -o "$out/loadgen" ./cmd/loadgen
cl start 3 >/dev/null
trap 'kill $(jobs -p) 2>/dev/null || true; cl stop >/dev/null 2>&1 || true' EXIT
leader=$(cl leader | cut -d' ' -f1)
follower=$((leader % 3 + 1))
"$out/loadgen" --target "sofa://127.0.0.1:$((base + 1001)),127.0.0.1:$((base + 1002)),127.0.0.1:$((base + 1003))" \
  --rate "$rate" --duration 25s --warmup 0s --value-size 128 --fail-fast-after -1s --quiet --out "$out/load" 2> "$out/load.log" &
load=$!
sleep 5
attacker() { # attacker MODE PORTS...: runs for 15 s
  python3 - "$@" <<'EOF'
import socket, sys, time, os
mode, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
end = time.time() + 15
held, made = [], 0
if mode == "idle":
    for i in range(2000):
        try:
            s = socket.create_connection(("127.0.0.1", ports[0]), timeout=2)
            held.append(s); made += 1
        except OSError:
            pass
    while time.time() < end:
        time.sleep(0.5)
elif mode == "garbage":
    while time.time() < end:
        t = time.time()
        for i in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", ports[0]), timeout=1)
                s.sendall(os.urandom(64)); s.close(); made += 1
            except OSError:
                pass
        time.sleep(max(0, 0.1 - (time.time() - t)))
elif mode == "peerjam":
    while time.time() < end:
        held = [s for s in held if s.fileno() >= 0]
        for p in ports:
            while sum(1 for s in held if s.getpeername()[1] == p) < 64:
                try:
                    held.append(socket.create_connection(("127.0.0.1", p), timeout=1)); made += 1
                except OSError:
                    break
        for s in list(held):  # drop the ones the replica closed, so they are redialled
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    s.close(); held.remove(s)
            except BlockingIOError:
                pass
            except OSError:
                s.close(); held.remove(s)
        time.sleep(0.1)
print(f"attacker: {mode}: {made} connections made", file=sys.stderr)
EOF
}
case "$attack" in
none) sleep 15 ;;
idle) attacker idle $((base + 1000 + leader)) 2> "$out/attack.log" ;;
garbage) attacker garbage $((base + 1000 + leader)) 2> "$out/attack.log" ;;
peerjam)
  attacker peerjam $((base + 1)) $((base + 2)) $((base + 3)) 2> "$out/attack.log" &
  apid=$!
  sleep 2
  kill "$(cat "$out/c/replica$follower.pid")"
  sleep 1
  cl start 3 >/dev/null || true
  wait "$apid" || true
  ;;
*) echo "unknown attack $attack" >&2; exit 2 ;;
esac
wait "$load" || true
cat "$out/attack.log" 2>/dev/null || true
python3 - "$out/load/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
op = s.get("ops", {}).get("put") or next(iter(s.get("ops", {}).values()), {})
ms = lambda ns: "%.1f ms" % (ns / 1e6)
errs = {k: v for k, v in op.get("errors_by_class", {}).items() if v}
print("background load: offered %.0f/s, completed %.0f/s, errors %s, p50 %s, p99 %s, max %s" % (
    s["target_ops_per_sec"], s["completed_ops_per_sec"], errs or "none",
    ms(op.get("p50_ns", 0)), ms(op.get("p99_ns", 0)), ms(op.get("max_ns", 0))))
EOF
for i in 1 2 3; do
  printf 'replica %s: log lines %s, leader changes to a new leader %s\n' "$i" "$(wc -l < "$out/c/replica$i.log")" \
    "$(grep 'msg="leader changed"' "$out/c/replica$i.log" | sed -nE 's/.* to=([0-9]+) .*/\1/p' |
      awk '$1 != 0 { if (last != "" && $1 != last) n++; last = $1 } END { print n + 0 }')"
done
if [ "$attack" = peerjam ]; then
  curl -s --max-time 2 "http://127.0.0.1:$((base + 2000 + follower))/status" | python3 -c \
    'import json,sys; s=json.load(sys.stdin); print("restarted follower %d: commit %d, leader %d" % (s["id"], s["commit"], s["leader"]))'
fi
