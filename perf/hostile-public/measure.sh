#!/usr/bin/env bash
# Hostile public clients against release binaries, on loopback: slow readers (300 × 8 MiB,
# 4 KiB receive buffer), 4,500 idle TCP-route connections (from 1 or 10 source IPs), 4,300
# slow POSTs; a probe from another source IP measures the other requests meanwhile, and the
# edge RSS is sampled. Before/after: run once with the limits set out of reach
# (--client-write-timeout 100000 --tcp-idle-timeout 100000 --upgrade-idle-timeout 100000
# --request-body-min-rate 0 --max-connections-per-ip 1000000 --tunnel-stream-limit 1000000),
# once with the defaults.
# measure.sh BINDIR SCENARIO [edge flags...]
#   BINDIR: directory with ringtun-edge, ringtun, ringtun-load (release)
#   SCENARIO: slow-readers | idle-tcp | idle-tcp-10ips | slow-post
set -euo pipefail
BIN=$(cd "$1" && pwd); SCEN=$2; shift 2
A=$(cd "$(dirname "$0")" && pwd)/attack.py
WORK=$(mktemp -d /tmp/edgehttp-m.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_log() { for _ in $(seq 1 600); do if grep -qE "$2" "$1" 2>/dev/null; then grep -oE "$2" "$1" | head -1; return 0; fi; sleep 0.05; done; echo "timeout waiting $2 in $1" >&2; tail "$1" >&2; return 1; }
rss() { awk '/^VmRSS/ {print $2" kB"}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

$BIN/ringtun-load origin --http 127.0.0.1:0 --body-size 8388608 > "$WORK/big.out" 2>&1 & PIDS+=($!)
$BIN/ringtun-load origin --http 127.0.0.1:0 --body-size 13 --tcp 127.0.0.1:0 > "$WORK/small.out" 2>&1 & PIDS+=($!)
BIG=$(wait_log "$WORK/big.out" 'listening http [0-9.:]+' | awk '{print $3}')
SMALL=$(wait_log "$WORK/small.out" 'listening http [0-9.:]+' | awk '{print $3}')
ECHO=$(wait_log "$WORK/small.out" 'listening tcp [0-9.:]+' | awk '{print $3}')
$BIN/ringtun-edge --state-dir "$WORK/edge" --admin 127.0.0.1:0 --public-http 127.0.0.1:0 \
  --data-center dfw=127.0.1.1:0,127.0.1.2:0 --data-center mci=127.0.2.1:0,127.0.2.2:0 "$@" 2> "$WORK/edge.err" &
EDGE=$!; PIDS+=($EDGE)
ADMIN=$(wait_log "$WORK/edge.err" 'admin=[0-9.:]+' | cut -d= -f2)
PUBLIC=$(wait_log "$WORK/edge.err" 'public_http=[0-9.:]+' | cut -d= -f2)
export RINGTUN_API_TOKEN; RINGTUN_API_TOKEN=$(tr -d '\n' < "$WORK/edge/admin-token"); export RINGTUN_EDGE_API=$ADMIN
mkdir -p "$WORK/home"
rt() { HOME="$WORK/home" $BIN/ringtun "$@"; }
rt tunnel create bench > /dev/null
rt tunnel route dns bench big.test > /dev/null
rt tunnel route dns bench small.test > /dev/null
TPORT=$(free_port)
rt tunnel route tcp bench "$TPORT" > /dev/null
printf 'ingress:\n  - hostname: big.test\n    service: http://%s\n  - hostname: tcp.test\n    service: tcp://%s\n  - service: http://%s\n' "$BIG" "$ECHO" "$SMALL" > "$WORK/config.yml"
HOME="$WORK/home" $BIN/ringtun tunnel run bench --config "$WORK/config.yml" --metrics 127.0.0.1:0 2> "$WORK/conn.err" & PIDS+=($!)
CM=$(wait_log "$WORK/conn.err" 'metrics=[0-9.:]+' | cut -d= -f2)
for _ in $(seq 1 300); do rt tunnel ready --metrics "$CM" >/dev/null 2>&1 && break; sleep 0.05; done
sleep 1
echo "== $SCEN with edge flags: $* (edge RSS idle: $(rss $EDGE))"
python3 $A probe "$PUBLIC" small.test 5 | sed 's/^/baseline/'
case $SCEN in
  slow-readers) python3 $A slow-readers 300 "$PUBLIC" big.test / 60 & ATT=$! ;;
  idle-tcp) python3 $A idle-tcp 4500 "127.0.0.1:$TPORT" 1 60 & ATT=$! ;;
  idle-tcp-10ips) python3 $A idle-tcp 4500 "127.0.0.1:$TPORT" 10 60 & ATT=$! ;;
  slow-post) python3 $A slow-post 4300 "$PUBLIC" small.test 1 90 & ATT=$! ;;
esac
sleep 5
( for i in 1 2 3 4 5 6; do sleep 10; echo "  edge RSS at +$((i*10+5))s: $(rss $EDGE)"; done ) &
python3 $A probe "$PUBLIC" small.test 60
wait $ATT || true
echo "== limit hits: $(curl -s -H "Authorization: Bearer $RINGTUN_API_TOKEN" "http://$ADMIN/metrics" | grep -E 'limit_hits_total\{' | grep -v ' 0$' | tr '\n' ' ')"
echo "== limit log lines: $(grep -c 'limit reached' "$WORK/edge.err" || true)"
