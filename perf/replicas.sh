#!/usr/bin/env bash
# Replicas in production (docs/replicas-contract.md), measured on this machine, all on loopback:
#   1. rolling restart of 4 replicas at 50 % of measured capacity: failed requests (goal 0) and
#      p99 latency during the restart against p99 before it (same rate, same connections);
#   2. the spread of requests across the 4 replicas under p2c and round-robin (max/min);
#   3. scale: N connectors (default 100, 4 links each) of one tunnel: time until all are
#      registered, edge memory, and the spread across them under p2c and round-robin.
#
# Usage: perf/replicas.sh [SCALE_CONNECTORS] [RUN_SECONDS]   (defaults 100 and 30)
# Writes perf/results/replicas/<date>/README.md and the raw ringtun-load JSON next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-100}
DUR=${2:-30}
CONNS=32
OUT=perf/results/replicas/$(date -u +%Y-%m-%d)
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/ringtun-replicas.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building (release)"
cargo build --release --locked -q -p ringtun-connector -p ringtun-edge-sim -p ringtun-benches
BIN=target/release
LOAD=$BIN/ringtun-load

wait_log() { # file pattern [tries] -> first match
  local tries=${3:-400}
  for _ in $(seq 1 "$tries"); do
    if grep -qE "$2" "$1" 2>/dev/null; then grep -oE "$2" "$1" | head -1; return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1" >&2; tail -20 "$1" >&2; return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# --- edge, tunnel, origin ---------------------------------------------------------------
$LOAD origin --http 127.0.0.1:0 --body-size 128 > "$WORK/origin.out" 2> "$WORK/origin.err" &
PIDS+=($!)
ORIGIN=$(wait_log "$WORK/origin.out" 'listening http [0-9.:]+' | awk '{print $3}')
mkdir -p "$WORK/home"
$BIN/ringtun-edge --state-dir "$WORK/edge" --admin 127.0.0.1:0 --public-http 127.0.0.1:0 \
  --data-center dfw=127.0.1.1:0,127.0.1.2:0 --data-center mci=127.0.2.1:0,127.0.2.2:0 \
  2> "$WORK/edge.err" &
EDGE_PID=$!; PIDS+=($EDGE_PID)
ADMIN=$(wait_log "$WORK/edge.err" 'admin=[0-9.:]+' | cut -d= -f2)
PUBLIC=$(wait_log "$WORK/edge.err" 'public_http=[0-9.:]+' | cut -d= -f2)
export RINGTUN_API_TOKEN; RINGTUN_API_TOKEN=$(tr -d '\n' < "$WORK/edge/admin-token")
export RINGTUN_EDGE_API=$ADMIN
rt() { HOME="$WORK/home" $BIN/ringtun "$@"; }
rt tunnel create bench > /dev/null
rt tunnel route dns bench bench.test > /dev/null
echo "== edge admin $ADMIN, public $PUBLIC, origin $ORIGIN"

# start_replica NAME -> sets REPLICA_PID and REPLICA_METRICS
start_replica() {
  local name=$1
  # The binary itself, not the `rt` function: `$!` must be the connector's PID for SIGTERM.
  HOME="$WORK/home" $BIN/ringtun tunnel run bench --url "http://$ORIGIN" --label "$name" \
    --metrics 127.0.0.1:0 --grace-period 30s 2> "$WORK/$name.err" &
  REPLICA_PID=$!; PIDS+=($REPLICA_PID)
  REPLICA_METRICS=$(wait_log "$WORK/$name.err" 'metrics=[0-9.:]+' | cut -d= -f2)
}
wait_ready() { # metrics-addr
  for _ in $(seq 1 300); do
    rt tunnel ready --metrics "$1" > /dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "replica at $1 never became ready" >&2; return 1
}
load() { # name rate seconds [extra]
  local name=$1 rate=$2 secs=$3; shift 3
  $LOAD http "http://$PUBLIC/" --host bench.test -R "$rate" -c "$CONNS" -d "${secs}s" \
    --warmup 1s -q --json "$OUT/$name.json" "$@" > "$OUT/$name.txt" 2>&1 || true
}
failures() { json "$OUT/$1.json" "d['counters']['non_2xx_3xx'] + d['counters']['timeouts'] + d['counters']['connect_errors'] + d['counters']['read_errors'] + d['counters']['write_errors'] + d['counters']['protocol_errors']"; }
responses() { json "$OUT/$1.json" "d['counters']['responses']"; }
p99_ms() { json "$OUT/$1.json" "round(d['corrected']['p99'] / 1000, 2)"; }
requests_by_connector() { # -> file with "id requests" lines
  rt tunnel info bench -o json | python3 -c "
import json,sys
d=json.load(sys.stdin)
for c in d['connectors']: print(c['id'], c.get('requests', 0))"
}
spread() { # before-file after-file -> "max/min (min..max over N)"
  python3 - "$1" "$2" <<'PY'
import sys
def read(p):
    out = {}
    for line in open(p):
        k, v = line.split()
        out[k] = int(v)
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
d = [b[k] - a.get(k, 0) for k in b]
lo, hi = min(d), max(d)
print(f"{hi / lo:.3f} (min {lo}, max {hi}, over {len(d)} replicas)" if lo > 0 else f"inf (min {lo}, max {hi})")
PY
}

# --- 1. rolling restart -----------------------------------------------------------------
declare -a RP RM EXITS
for i in 1 2 3 4; do
  start_replica "old$i"; RP[$i]=$REPLICA_PID; RM[$i]=$REPLICA_METRICS
done
for i in 1 2 3 4; do wait_ready "${RM[$i]}"; done
echo "== 4 replicas ready"

load capacity 0 10
CAP=$(json "$OUT/capacity.json" "round(d['achieved_rate'])")
RATE=$((CAP / 2))
echo "== capacity (closed loop, $CONNS connections): $CAP req/s; half: $RATE req/s"

load before "$RATE" "$DUR"
echo "== before: p99 $(p99_ms before) ms, failures $(failures before) of $(responses before)"

L0=$(date +%s.%N)
load during "$RATE" "$DUR" &
LOAD_PID=$!
sleep 5
T0=$(date +%s.%N)
for i in 1 2 3 4; do
  start_replica "new$i"; NEW_PID=$REPLICA_PID
  wait_ready "$REPLICA_METRICS"
  kill -TERM "${RP[$i]}"
  code=0; wait "${RP[$i]}" || code=$?
  EXITS+=("$code")
  echo "   replaced old$i (exit $code) by new$i"
  RP[$i]=$NEW_PID
  sleep 2 # as an operator (or a Deployment's rollout) lets the new one settle
done
T1=$(date +%s.%N)
wait "$LOAD_PID"
ROLL_S=$(python3 -c "print(round($T1 - $T0, 1))")
# The seconds of the measured window (it starts after the 1 s warmup) the restart spanned.
R_FROM=$(python3 -c "print(max(0, int($T0 - $L0 - 1)))")
R_TO=$(python3 -c "print(int($T1 - $L0 - 1) + 1)")
worst_p99() { # name [from to] -> worst one-second p99 in ms
  json "$OUT/$1.json" "round(max(p['p99_us'] for p in d['timeline'] if ${2:-0} <= p['second'] <= ${3:-10**9}) / 1000, 2)"
}
echo "== during: rolling restart took ${ROLL_S} s; p99 $(p99_ms during) ms (worst second of the restart $(worst_p99 during "$R_FROM" "$R_TO") ms), failures $(failures during) of $(responses during)"

# --- 2. spread over the 4 replicas ------------------------------------------------------
declare -A SPREAD4
for policy in p2c round-robin; do
  rt tunnel lb bench "$policy" > /dev/null
  requests_by_connector > "$WORK/a"
  load "spread4-$policy" 0 10
  requests_by_connector > "$WORK/b"
  SPREAD4[$policy]=$(spread "$WORK/a" "$WORK/b")
  echo "== spread over 4, $policy: ${SPREAD4[$policy]}"
done
for i in 1 2 3 4; do kill -TERM "${RP[$i]}"; done
for i in 1 2 3 4; do wait "${RP[$i]}" 2>/dev/null || true; done

# --- 3. scale ---------------------------------------------------------------------------
EDGE_RSS0=$(rss_kib "$EDGE_PID")
S0=$(date +%s.%N)
SP=()
for i in $(seq 1 "$SCALE"); do
  HOME="$WORK/home" $BIN/ringtun tunnel run bench --url "http://$ORIGIN" --label "s$i" \
    --workers 1 2> "$WORK/s$i.err" &
  SP+=($!); PIDS+=($!)
done
for _ in $(seq 1 1200); do
  n=$(rt tunnel info bench -o json | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(sum(1 for c in d['connectors'] if len(c.get('links', [])) == 4))")
  [ "$n" -ge "$SCALE" ] && break
  sleep 0.1
done
S1=$(date +%s.%N)
SCALE_S=$(python3 -c "print(round($S1 - $S0, 2))")
EDGE_RSS1=$(rss_kib "$EDGE_PID")
echo "== $n/$SCALE connectors with 4 links each after ${SCALE_S} s; edge RSS ${EDGE_RSS0} -> ${EDGE_RSS1} KiB"
declare -A SPREADN
# Round-robin first: it balances served counts over a replica's whole life, so a phase after
# p2c would also be making up for p2c's (load-aware) unevenness.
for policy in round-robin p2c; do
  rt tunnel lb bench "$policy" > /dev/null
  requests_by_connector > "$WORK/a"
  load "spread$SCALE-$policy" 0 "$DUR"
  requests_by_connector > "$WORK/b"
  SPREADN[$policy]=$(spread "$WORK/a" "$WORK/b")
  echo "== spread over $SCALE, $policy: ${SPREADN[$policy]}"
done

{
  echo "# Replicas in production: rolling restart, spread, scale"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`perf/replicas.sh $SCALE $DUR\`. Edge with TLS links (2 data centers x 2 servers),"
  echo "replicas \`ringtun tunnel run --url\`, origin \`ringtun-load origin --body-size 128\`, load"
  echo "\`ringtun-load http -c $CONNS\`, all on the same 2 cores. Latency is corrected (from intended send time)."
  echo
  echo "## Rolling restart of 4 replicas at 50 % of capacity"
  echo
  echo "Capacity (closed loop, $CONNS connections, 4 replicas): **$CAP req/s**; rate used: $RATE req/s."
  echo "Each step: start a new replica, wait until \`ringtun tunnel ready\` exits 0, SIGTERM the old one, wait for it to exit."
  echo "Exit codes of the 4 old replicas: ${EXITS[*]} (0 = drained and exited cleanly)."
  echo
  echo "| window | requests | failed | p99 (ms) | worst one-second p99 (ms) |"
  echo "|---|---:|---:|---:|---:|"
  echo "| before (${DUR} s) | $(responses before) | $(failures before) | $(p99_ms before) | $(worst_p99 before) |"
  echo "| during (${DUR} s; the restart took ${ROLL_S} s, seconds $R_FROM-$R_TO) | $(responses during) | $(failures during) | $(p99_ms during) | $(worst_p99 during "$R_FROM" "$R_TO") (restart seconds) |"
  echo
  echo "## Spread of requests across replicas (max/min of requests served; goal <= 1.2)"
  echo
  echo "| replicas | p2c | round-robin |"
  echo "|---:|---|---|"
  echo "| 4 (10 s closed loop) | ${SPREAD4[p2c]} | ${SPREAD4[round-robin]} |"
  echo "| $SCALE (${DUR} s closed loop) | ${SPREADN[p2c]} | ${SPREADN[round-robin]} |"
  echo
  echo "## Scale: $SCALE connectors of one tunnel ($((SCALE * 4)) links)"
  echo
  echo "- all registered with 4 links each after **${SCALE_S} s** (started one after another from this script; \`--workers 1\` each)"
  echo "- edge RSS: ${EDGE_RSS0} KiB before, **${EDGE_RSS1} KiB** with $SCALE connectors"
} > "$OUT/README.md"
echo
cat "$OUT/README.md"
