#!/usr/bin/env bash
# Compares ringtun-load with wrk on closed-loop maximum throughput against the same origin
# (ringtun-load's own `origin`, one worker), and CPU time per request of both generators.
# Generator pinned to core 0, origin to core 1 (taskset). Medians of RUNS runs.
# Usage: perf/load-vs-wrk.sh [out.md]   (env: RUNS=3 DUR=5 CONNS=50 BODY=13)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-perf/results/load/load-vs-wrk.md}
RUNS=${RUNS:-3}; DUR=${DUR:-5}; CONNS=${CONNS:-50}; BODY=${BODY:-13}
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
cargo build --release -p ringtun-benches --locked
BIN=target/release/ringtun-load
TMP=$(mktemp -d)
taskset -c 1 "$BIN" origin --http 127.0.0.1:0 --threads 1 --body-size "$BODY" >"$TMP/origin.out" 2>/dev/null &
ORIGIN=$!
trap 'kill $ORIGIN 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do grep -q listening "$TMP/origin.out" && break; sleep 0.1; done
ADDR=$(awk '/listening http/{print $3}' "$TMP/origin.out")
URL="http://$ADDR/"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

TCK=$(getconf CLK_TCK)
# utime+stime of the origin, seconds
origin_cpu() { awk -v t="$TCK" '{print ($14+$15)/t}' "/proc/$ORIGIN/stat"; }
# run NAME CMD... -> prints "rps generator_cpu_seconds origin_cpu_seconds"
run() {
  local name=$1; shift
  local o0 o1
  o0=$(origin_cpu)
  /usr/bin/time -f "%U %S" -o "$TMP/time" "$@" >"$TMP/$name.out" 2>/dev/null || true
  o1=$(origin_cpu)
  local rps cpu
  rps=$(awk '/^Requests\/sec:/{print $2}' "$TMP/$name.out")
  cpu=$(awk '{print $1+$2}' "$TMP/time")
  echo "$rps $cpu $(awk -v a="$o0" -v b="$o1" 'BEGIN{print b-a}')"
}
per_req() { awk -v c="$1" -v r="$2" -v d="$DUR" 'BEGIN{printf "%.3f", c*1e6/(r*d)}'; }
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

declare -a W_RPS W_CPU W_OCPU R_RPS R_CPU R_OCPU
for i in $(seq "$RUNS"); do
  read -r rps cpu ocpu < <(run wrk taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" "$URL")
  W_RPS+=("$rps"); W_CPU+=("$(per_req "$cpu" "$rps")"); W_OCPU+=("$(per_req "$ocpu" "$rps")")
  read -r rps cpu ocpu < <(run rl taskset -c 0 "$BIN" http "$URL" -R 0 -t 1 -c "$CONNS" -d "${DUR}s" -q)
  R_RPS+=("$rps"); R_CPU+=("$(per_req "$cpu" "$rps")"); R_OCPU+=("$(per_req "$ocpu" "$rps")")
  echo "run $i: wrk ${W_RPS[-1]} req/s ${W_CPU[-1]} us/req; ringtun-load ${R_RPS[-1]} req/s ${R_CPU[-1]} us/req" >&2
done
wr=$(printf '%s\n' "${W_RPS[@]}" | median); wc=$(printf '%s\n' "${W_CPU[@]}" | median)
rr=$(printf '%s\n' "${R_RPS[@]}" | median); rc=$(printf '%s\n' "${R_CPU[@]}" | median)
ratio=$(awk -v a="$rr" -v b="$wr" 'BEGIN{printf "%.3f", a/b}')
cratio=$(awk -v a="$rc" -v b="$wc" 'BEGIN{printf "%.3f", a/b}')
{
  echo "# ringtun-load vs wrk: closed-loop throughput and CPU per request"
  echo
  echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ), host: $(nproc) cores, $(uname -r), commit $(git rev-parse --short HEAD)"
  echo "- Origin: \`taskset -c 1 ringtun-load origin --http 127.0.0.1:0 --threads 1 --body-size $BODY\`"
  echo "- wrk: \`taskset -c 0 wrk -t1 -c$CONNS -d${DUR}s $URL\`"
  echo "- ringtun-load: \`taskset -c 0 ringtun-load http $URL -R 0 -t 1 -c $CONNS -d ${DUR}s -q\`"
  echo "- CPU per request: generator utime+stime (\`/usr/bin/time\`, includes start-up) / (req/s × duration); origin utime+stime from \`/proc/<pid>/stat\` over the same run. $RUNS runs each, alternating; medians. Load average at start: $LOAD."
  echo
  echo "| run | wrk req/s | wrk µs CPU/req | origin µs CPU/req (wrk) | ringtun-load req/s | ringtun-load µs CPU/req | origin µs CPU/req (ringtun-load) |"
  echo "|---|---|---|---|---|---|---|"
  for i in $(seq 0 $((RUNS-1))); do
    echo "| $((i+1)) | ${W_RPS[$i]} | ${W_CPU[$i]} | ${W_OCPU[$i]} | ${R_RPS[$i]} | ${R_CPU[$i]} | ${R_OCPU[$i]} |"
  done
  echo "| **median** | **$wr** | **$wc** | $(printf '%s\n' "${W_OCPU[@]}" | median) | **$rr** | **$rc** | $(printf '%s\n' "${R_OCPU[@]}" | median) |"
  echo
  echo "ringtun-load / wrk: throughput ratio **$ratio**, CPU-per-request ratio **$cratio**."
} >"$OUT"
cat "$OUT"
