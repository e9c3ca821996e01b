#!/usr/bin/env bash
# Closed-loop keep-alive HTTP with small responses along each path, in one run:
#   direct to the origin; ringtun (edge -> connector -> origin) with TLS links and with plaintext
#   links; nginx as a one-hop reverse proxy; rathole as a tunnel (server -> client -> origin).
# Reports requests/s, latency and the proxy processes' CPU seconds per 10,000 requests
# (utime + stime from /proc). Everything runs on loopback on this machine.
#
# Usage: perf/tunnel-vs-peers.sh [DURATION_S] [CONNECTIONS]   (defaults 10 and 32)
# Writes perf/results/tunnel/<date>/report.md and the raw ringtun-load JSON next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONNS=${2:-32}
OUT=perf/results/tunnel/$(date -u +%Y-%m-%d)
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/ringtun-peers.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx; then
  echo "== installing nginx (Debian)"; apt-get update -qq && apt-get install -y -qq nginx-light
fi
if ! need rathole; then
  echo "== installing rathole (cargo install rathole; its lock file no longer builds, so no --locked)"
  cargo install rathole
fi
echo "== building ringtun (release)"
cargo build --release --locked -q
BIN=target/release
LOAD=$BIN/ringtun-load

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_log() { # file pattern -> first match
  for _ in $(seq 1 200); do
    if grep -qE "$2" "$1" 2>/dev/null; then grep -oE "$2" "$1" | head -1; return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}
cpu_ticks() { # pids... -> utime+stime ticks summed
  local t=0
  for p in "$@"; do
    if [ -r "/proc/$p/stat" ]; then
      t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    fi
  done
  echo "$t"
}
TICK=$(getconf CLK_TCK)

# The origin: 128-byte bodies.
$LOAD origin --http 127.0.0.1:0 --body-size 128 > "$WORK/origin.out" 2> "$WORK/origin.err" &
PIDS+=($!)
ORIGIN=$(wait_log "$WORK/origin.out" 'listening http [0-9.:]+' | awk '{print $3}')
echo "== origin on $ORIGIN"

ROWS=()
run_load() { # name url host cpu-pids...
  local name=$1 url=$2 host=$3; shift 3
  local args=(http "$url" -R 0 -c "$CONNS" -d "${DUR}s" --warmup 1s -q --json "$OUT/$name.json")
  [ -n "$host" ] && args+=(--host "$host")
  local c0; c0=$(cpu_ticks "$@")
  $LOAD "${args[@]}" > "$OUT/$name.txt" 2>&1 || true
  local c1; c1=$(cpu_ticks "$@")
  local rps p50 p99 reqs
  rps=$(grep -oE 'Requests/sec: +[0-9.]+' "$OUT/$name.txt" | awk '{print $2}')
  reqs=$(grep -oE '^ *[0-9]+ requests in' "$OUT/$name.txt" | awk '{print $1}')
  p50=$(grep -E '^ +50\.000%' "$OUT/$name.txt" | head -1 | awk '{print $2}')
  p99=$(grep -E '^ +99\.000%' "$OUT/$name.txt" | head -1 | awk '{print $2}')
  local cpu="-"
  if [ "$#" -gt 0 ] && [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; then
    # Ticks over the warmup + measured window, scaled to the requests of the whole window.
    local total_reqs; total_reqs=$(python3 -c "print(round($reqs * ($DUR + 1) / $DUR))")
    cpu=$(python3 -c "print(f'{($c1 - $c0) / $TICK / $total_reqs * 10000:.3f}')")
  fi
  echo "   $name: ${rps:-?} req/s, p50 ${p50:-?}, p99 ${p99:-?}, proxy CPU ${cpu} s per 10k requests"
  ROWS+=("| $name | ${rps:-?} | ${p50:-?} | ${p99:-?} | $cpu |")
}

echo "== direct"
run_load direct "http://$ORIGIN/" ""

start_ringtun() { # name extra-flags...
  local name=$1; shift
  local dir="$WORK/$name"; mkdir -p "$dir/home"
  $BIN/ringtun-edge --state-dir "$dir/edge" --admin 127.0.0.1:0 --public-http 127.0.0.1:0 \
    --data-center dfw=127.0.1.1:0,127.0.1.2:0 --data-center mci=127.0.2.1:0,127.0.2.2:0 "$@" \
    2> "$dir/edge.err" &
  EDGE_PID=$!; PIDS+=($EDGE_PID)
  local admin; admin=$(wait_log "$dir/edge.err" 'admin=[0-9.:]+' | cut -d= -f2)
  PUBLIC=$(wait_log "$dir/edge.err" 'public_http=[0-9.:]+' | cut -d= -f2)
  export RINGTUN_API_TOKEN; RINGTUN_API_TOKEN=$(tr -d '\n' < "$dir/edge/admin-token")
  HOME="$dir/home" $BIN/ringtun --edge-api "$admin" tunnel create bench > /dev/null
  HOME="$dir/home" $BIN/ringtun --edge-api "$admin" tunnel route dns bench bench.test > /dev/null
  HOME="$dir/home" $BIN/ringtun --edge-api "$admin" tunnel run bench --url "http://$ORIGIN" "$@" \
    2> "$dir/connector.err" &
  CONN_PID=$!; PIDS+=($CONN_PID)
  for _ in $(seq 1 200); do
    [ "$(grep -c 'link registered' "$dir/connector.err" || true)" -ge 4 ] && break
    sleep 0.05
  done
  sleep 0.3
}

echo "== ringtun, TLS links"
start_ringtun ringtun-tls
run_load ringtun-tls "http://$PUBLIC/" bench.test "$EDGE_PID" "$CONN_PID"
kill "$CONN_PID" "$EDGE_PID"; wait "$CONN_PID" "$EDGE_PID" 2>/dev/null || true

echo "== ringtun, plaintext links (--danger-plaintext-links)"
start_ringtun ringtun-plain --danger-plaintext-links
run_load ringtun-plaintext "http://$PUBLIC/" bench.test "$EDGE_PID" "$CONN_PID"
kill "$CONN_PID" "$EDGE_PID"; wait "$CONN_PID" "$EDGE_PID" 2>/dev/null || true

echo "== nginx, one hop"
NPORT=$(free_port)
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server $ORIGIN; keepalive 64; }
  server {
    listen 127.0.0.1:$NPORT;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
NGINX
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' &
NGINX_MASTER=$!; PIDS+=($NGINX_MASTER)
sleep 0.5
NGINX_PIDS=$(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')
# shellcheck disable=SC2086
run_load nginx "http://127.0.0.1:$NPORT/" "" "$NGINX_MASTER" $NGINX_PIDS
kill "$NGINX_MASTER"; wait "$NGINX_MASTER" 2>/dev/null || true

echo "== rathole, tunnel"
RCTL=$(free_port); RPORT=$(free_port)
cat > "$WORK/rathole-server.toml" <<RS
[server]
bind_addr = "127.0.0.1:$RCTL"
[server.services.web]
token = "bench-token"
bind_addr = "127.0.0.1:$RPORT"
RS
cat > "$WORK/rathole-client.toml" <<RC
[client]
remote_addr = "127.0.0.1:$RCTL"
[client.services.web]
token = "bench-token"
local_addr = "$ORIGIN"
RC
rathole -s "$WORK/rathole-server.toml" > "$WORK/rathole-server.log" 2>&1 &
RS_PID=$!; PIDS+=($RS_PID)
rathole -c "$WORK/rathole-client.toml" > "$WORK/rathole-client.log" 2>&1 &
RC_PID=$!; PIDS+=($RC_PID)
sleep 1.5
run_load rathole "http://127.0.0.1:$RPORT/" "" "$RS_PID" "$RC_PID"

{
  echo "# Tunnel vs peers: closed-loop keep-alive HTTP, 128-byte responses"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "\`perf/tunnel-vs-peers.sh $DUR $CONNS\`: ringtun-load http -R 0 -c $CONNS -d ${DUR}s --warmup 1s,"
  echo "generator, origin and proxies all on the same cores. CPU is utime + stime of the proxy processes"
  echo "(ringtun: edge + connector; nginx: master + workers; rathole: server + client) over warmup + run."
  echo
  echo "| path | requests/s | p50 | p99 | proxy CPU s / 10k requests |"
  echo "|---|---:|---:|---:|---:|"
  for r in "${ROWS[@]}"; do echo "$r"; done
} > "$OUT/report.md"
echo
cat "$OUT/report.md"
