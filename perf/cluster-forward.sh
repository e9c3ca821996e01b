#!/usr/bin/env bash
# Forwarding between edge nodes (docs/cluster.md): the extra latency and CPU of a request that
# arrives on a node without a link of its tunnel and is forwarded over a peer link, against the
# same request served by the node that holds the links. All on loopback:
#   etcd (one member) <- two ringtun-edge nodes (--etcd, one worker each)
#   a ringtun connector (4 links, all to node 1) -> ringtun-load origin
#   ringtun-load: closed loop on node 1's public HTTP (local), then on node 2's (forwarded).
# CPU per request: utime+stime of every process on the path (/proc/PID/stat), divided by the
# responses of the run; local: node 1 and the connector; forwarded: node 2, node 1, connector.
#
# Usage: perf/cluster-forward.sh [SECONDS] [CONNECTIONS]   (defaults 10 and 8; one load thread)
#   REPEATS=N interleaved repeats of both paths (default 5); the report gives medians and spreads.
#   RATE=N requests per second of the fixed-rate latency runs (default 2000).
#   BUILD=debug uses target/debug instead of a release build (quicker to build, slower to run).
# Writes perf/results/cluster-forward/<date>/README.md and the raw ringtun-load JSON of every run
# next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONNS=${2:-8}
REPEATS=${REPEATS:-5}
RATE=${RATE:-2000}
BUILD=${BUILD:-release}
OUT=perf/results/cluster-forward/$(date -u +%Y-%m-%d)
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/ringtun-cluster-forward.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$BUILD" = release ]; then
  echo "== building (release)"
  cargo build --release --locked -q -p ringtun-connector -p ringtun-edge-sim -p ringtun-benches
  BIN=target/release
else
  BIN=target/debug
fi
LOAD=$BIN/ringtun-load
ETCD=$(command -v etcd || echo /usr/bin/etcd)
[ -x "$ETCD" ] || { echo "etcd not found: run .ci/deps.sh (Debian's etcd-server)" >&2; exit 1; }

wait_log() { # file pattern [tries] -> first match
  local tries=${3:-600}
  for _ in $(seq 1 "$tries"); do
    if grep -qE "$2" "$1" 2>/dev/null; then grep -oE "$2" "$1" | head -1; return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1" >&2; tail -20 "$1" >&2; return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { # pids... -> utime+stime summed, in clock ticks
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
HZ=$(getconf CLK_TCK)

# --- etcd, origin, two nodes, tunnel, connector ----------------------------------------------
CP=$(free_port); PP=$(free_port)
"$ETCD" --name m --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$CP" \
  --advertise-client-urls "http://127.0.0.1:$CP" --listen-peer-urls "http://127.0.0.1:$PP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PP" --initial-cluster "m=http://127.0.0.1:$PP" \
  > "$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$CP/health" > /dev/null && break; sleep 0.1; done
$LOAD origin --http 127.0.0.1:0 --body-size 128 > "$WORK/origin.out" 2> "$WORK/origin.err" &
PIDS+=($!)
ORIGIN=$(wait_log "$WORK/origin.out" 'listening http [0-9.:]+' | awk '{print $3}')
start_node() { # name -> sets NODE_PID NODE_ADMIN NODE_PUBLIC
  $BIN/ringtun-edge --state-dir "$WORK/$1" --admin 127.0.0.1:0 --public-http 127.0.0.1:0 \
    --data-center dfw=127.0.1.1:0 --workers 1 --etcd "http://127.0.0.1:$CP" 2> "$WORK/$1.err" &
  NODE_PID=$!; PIDS+=($NODE_PID)
  NODE_ADMIN=$(wait_log "$WORK/$1.err" 'admin=[0-9.:]+' | cut -d= -f2)
  NODE_PUBLIC=$(wait_log "$WORK/$1.err" 'public_http=[0-9.:]+' | cut -d= -f2)
}
start_node n1; N1=$NODE_PID; ADMIN1=$NODE_ADMIN; PUBLIC1=$NODE_PUBLIC
start_node n2; N2=$NODE_PID; PUBLIC2=$NODE_PUBLIC
mkdir -p "$WORK/home"
export RINGTUN_API_TOKEN; RINGTUN_API_TOKEN=$(tr -d '\n' < "$WORK/n1/admin-token")
export RINGTUN_EDGE_API=$ADMIN1
rt() { HOME="$WORK/home" $BIN/ringtun "$@"; }
rt tunnel create bench > /dev/null
rt tunnel route dns bench bench.test > /dev/null
# Node 1's discovery answer names only its own servers: every link goes to node 1.
HOME="$WORK/home" $BIN/ringtun tunnel run bench --url "http://$ORIGIN" --metrics 127.0.0.1:0 \
  2> "$WORK/connector.err" &
CONN=$!; PIDS+=($CONN)
wait_log "$WORK/connector.err" 'metrics=[0-9.:]+' > /dev/null
for p in "$PUBLIC1" "$PUBLIC2"; do
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' "http://$p/")" = 200 ] && break
    sleep 0.1
  done
done
echo "== node 1 public $PUBLIC1 (holds the links), node 2 public $PUBLIC2 (forwards)"

run() { # name public rate pids... -> "rate p50 p99 cpu_us responses"
  local name=$1 public=$2 rate=$3; shift 3
  local before after
  before=$(cpu_ticks "$@")
  $LOAD http "http://$public/" --host bench.test -R "$rate" -t 1 -c "$CONNS" -d "${DUR}s" --warmup 1s -q \
    --json "$OUT/$name.json" > "$OUT/$name.txt" 2>&1 || true
  after=$(cpu_ticks "$@")
  local responses; responses=$(json "$OUT/$name.json" "d['counters']['responses']")
  # The CPU window includes the 1 s warmup, whose responses are not counted: an overestimate
  # of the same size for both paths.
  local cpu_us; cpu_us=$(python3 -c "print(round(($after - $before) / $HZ * 1e6 / max(1, $responses), 1))")
  echo "$(json "$OUT/$name.json" "round(d['achieved_rate'])") $(json "$OUT/$name.json" "round(d['corrected']['p50'], 1)") $(json "$OUT/$name.json" "round(d['corrected']['p99'], 1)") $cpu_us $responses"
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$WORK/rows"
for i in $(seq 1 "$REPEATS"); do
  # Interleaved, and the order flips each repeat, so drift in the machine's load hits both paths.
  if [ $((i % 2)) = 1 ]; then order="local forwarded"; else order="forwarded local"; fi
  for path in $order; do
    if [ "$path" = local ]; then public=$PUBLIC1; pids=("$N1" "$CONN"); else public=$PUBLIC2; pids=("$N2" "$N1" "$CONN"); fi
    # Closed loop (-R 0): throughput and CPU per request at saturation.
    echo "$path closed $i $(run "$path-closed-$i" "$public" 0 "${pids[@]}")" >> "$WORK/rows"
    # Fixed rate: latency below saturation, where queueing does not hide the extra hop.
    echo "$path fixed $i $(run "$path-fixed-$i" "$public" "$RATE" "${pids[@]}")" >> "$WORK/rows"
    tail -2 "$WORK/rows"
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
FORWARDED=$(curl -s -H "Authorization: Bearer $(tr -d '\n' < "$WORK/n2/admin-token")" \
  "http://$(wait_log "$WORK/n2.err" 'admin=[0-9.:]+' | cut -d= -f2)/metrics" \
  | awk '/^ringtun_edge_peer_forwarded_total / {print $2}')

{
  echo "# Forwarded against local requests ($(date -u +%Y-%m-%dT%H:%MZ), $BUILD build)"
  echo
  echo "\`perf/cluster-forward.sh $DUR $CONNS\` (BUILD=$BUILD, REPEATS=$REPEATS, RATE=$RATE): GET with a"
  echo "128-byte body from \`ringtun-load origin\`, $CONNS connections, one load thread, ${DUR} s per run"
  echo "after 1 s of warmup. Two nodes on one etcd, one worker each; the connector's 4 links all on"
  echo "node 1. Each repeat runs both paths (the order flips every repeat), once closed-loop (-R 0:"
  echo "throughput, CPU per request) and once at a fixed $RATE req/s (latency). CPU: utime+stime from"
  echo "/proc/PID/stat of the processes on the path, per response (local: node 1 + connector;"
  echo "forwarded: node 2 + node 1 + connector). Load average (1/5/15 min) before: $LOAD_BEFORE;"
  echo "after: $LOAD_AFTER."
  echo
  echo "Medians over $REPEATS repeats, with the spread (min–max) in brackets:"
  echo
  python3 - "$WORK/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def col(path, kind, i):
    return [float(r[3 + i]) for r in rows if r[0] == path and r[1] == kind]
def cell(v, nd=0):
    f = (lambda x: f"{x:,.0f}") if nd == 0 else (lambda x: f"{x:,.{nd}f}")
    return f"{f(statistics.median(v))} [{f(min(v))}–{f(max(v))}]"
print("| path | closed-loop req/s | CPU µs/request | p50 µs at fixed rate | p99 µs at fixed rate |")
print("| --- | --- | --- | --- | --- |")
med = {}
for path in ("local", "forwarded"):
    rps, cpu = col(path, "closed", 0), col(path, "closed", 3)
    p50, p99 = col(path, "fixed", 1), col(path, "fixed", 2)
    med[path] = [statistics.median(x) for x in (rps, cpu, p50, p99)]
    print(f"| {path} | {cell(rps)} | {cell(cpu, 1)} | {cell(p50, 1)} | {cell(p99, 1)} |")
l, f = med["local"], med["forwarded"]
print()
print(f"Forwarded against local (ratio of medians): throughput ×{f[0]/l[0]:.2f}, CPU per request "
      f"×{f[1]/l[1]:.2f} (+{f[1]-l[1]:.1f} µs), p50 +{f[2]-l[2]:.1f} µs, p99 +{f[3]-l[3]:.1f} µs.")
print()
print("Every run (path, kind, repeat, req/s, p50 µs, p99 µs, CPU µs/request, responses):")
print()
print("```")
for r in rows:
    print(" ".join(r))
print("```")
PY
  echo
  echo "Node 2 forwarded $FORWARDED streams (ringtun_edge_peer_forwarded_total)."
} > "$OUT/README.md"
cat "$OUT/README.md"
