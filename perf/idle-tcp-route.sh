#!/usr/bin/env bash
# What an idle TCP-route connection costs: RSS of ringtun-edge and ringtun (one worker each,
# plaintext links) before and while `ringtun-load hold` keeps N echo connections open and idle
# through a TCP route to `ringtun-load origin --tcp`, after 20 warm-up connections. Prints KiB
# per connection for each process and together.
#
# Usage: perf/idle-tcp-route.sh [BINDIR] [N]   (BINDIR: target/release by default, N: 1000)
# The binaries must already be built (`cargo build --release --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(cd "${1:-target/release}" && pwd)   # absolute: the connector runs from another directory
N=${2:-1000}
D=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$D"' EXIT
mkdir -p "$D/home"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
RUST_LOG=info "$B/ringtun-edge" --state-dir "$D/state" --admin 127.0.0.1:0 --public-http 127.0.0.1:0 \
  --data-center dfw=127.1.77.1:0 --danger-plaintext-links --workers 1 >"$D/edge.log" 2>&1 &
EDGE=$!; PIDS+=("$EDGE")
for _ in $(seq 100); do grep -q "admin API listening" "$D/edge.log" && break; sleep 0.2; done
ADMIN=$(grep "admin API listening" "$D/edge.log" | sed -E 's/.*admin=([0-9.:]+).*/\1/' | head -1)
TOKEN=$(cat "$D/state/admin-token")
rt() { env -i HOME="$D/home" PATH="$PATH" RUST_LOG=info RINGTUN_API_TOKEN="$TOKEN" "$B/ringtun" --edge-api "$ADMIN" "$@"; }
rt tunnel create idle >"$D/create.log" 2>&1
rt tunnel route tcp idle "$PORT" >>"$D/create.log" 2>&1
"$B/ringtun-load" origin --tcp 127.0.0.1:0 --threads 1 --no-pin >"$D/origin.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do grep -q "listening tcp" "$D/origin.log" && break; sleep 0.2; done
printf 'ingress:\n  - service: tcp://%s\n' "$(awk '/listening tcp/{print $3}' "$D/origin.log")" >"$D/config.yml"
(cd "$D/home" && rt tunnel run idle --config "$D/config.yml" --danger-plaintext-links --workers 1 >"$D/conn.log" 2>&1) &
for _ in $(seq 150); do grep -q "link registered" "$D/conn.log" && break; sleep 0.2; done
sleep 2
CONN=$(pgrep -f "tunnel run idle --config $D" | head -1)
PIDS+=("$CONN")
"$B/ringtun-load" hold "127.0.0.1:$PORT" --proto echo -c 20 -d 1s >/dev/null 2>&1
sleep 1
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
E0=$(rss "$EDGE"); C0=$(rss "$CONN")
"$B/ringtun-load" hold "127.0.0.1:$PORT" --proto echo -c "$N" -d 6s >"$D/hold.txt" 2>&1 &
HOLD=$!
for _ in $(seq 200); do grep -q "^holding" "$D/hold.txt" && break; sleep 0.2; done
sleep 2
E1=$(rss "$EDGE"); C1=$(rss "$CONN")
wait "$HOLD"
cat "$D/hold.txt"
echo "ringtun-edge: $E0 -> $E1 KiB; ringtun: $C0 -> $C1 KiB"
python3 -c "print('per idle connection: edge %.2f KiB, connector %.2f KiB, together %.2f KiB' % (($E1-$E0)/$N, ($C1-$C0)/$N, ($E1-$E0+$C1-$C0)/$N))"
