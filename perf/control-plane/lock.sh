#!/bin/bash
# Usage: lock.sh BINDIR  — registration and public-request latency while another process holds
# BEGIN EXCLUSIVE on registry.db and an admin write waits on it.
set -u
BIN=$1; D=$(mktemp -d); mkdir -p $D/home
$BIN/ringtun-edge --state-dir $D/state --admin 127.0.0.1:0 --public-http 127.0.0.1:0 \
  --data-center dfw=127.0.1.1:0 --workers 2 2> $D/edge.log &
EP=$!
for i in $(seq 100); do grep -q "admin API listening" $D/edge.log && break; sleep 0.1; done
ADMIN=$(grep -o 'admin=[0-9.:]*' $D/edge.log | head -1 | cut -d= -f2)
PUB=$(grep -o 'public_http=[0-9.:]*' $D/edge.log | head -1 | cut -d= -f2)
SRV=$(grep -o 'server=[0-9.:]*' $D/edge.log | head -1 | cut -d= -f2)
TOKEN=$(cat $D/state/admin-token)
R="env HOME=$D/home RINGTUN_API_TOKEN=$TOKEN $BIN/ringtun --edge-api $ADMIN"
TID=$($R tunnel create web | sed -n "s/^Created tunnel web with id //p"); $R tunnel route dns web app.test > /dev/null
$BIN/ringtun-load origin --http 127.0.0.1:0 --threads 1 --no-pin > $D/origin.log 2>&1 &
OP=$!
for i in $(seq 100); do grep -qo '127.0.0.1:[0-9]*' $D/origin.log && break; sleep 0.1; done
ORIGIN=$(grep -o '127.0.0.1:[0-9]*' $D/origin.log | head -1)
$R tunnel run web --url http://$ORIGIN --ha-connections 2 > $D/c1.log 2>&1 &
C1=$!
for i in $(seq 300); do [ "$(grep -c 'link registered' $D/c1.log)" -ge 2 ] && break; sleep 0.1; done
curl -s -o /dev/null -w "before lock: GET %{http_code} %{time_total}s\n" -H 'Host: app.test' http://$PUB/
LOCKED=$D/locked
python3 - "$D/state/registry.db" "$LOCKED" <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
c.execute("BEGIN EXCLUSIVE"); open(sys.argv[2],"w").write("1"); time.sleep(12); c.execute("COMMIT")
PY
LP=$!
for i in $(seq 100); do [ -f $LOCKED ] && break; sleep 0.05; done; rm -f $LOCKED
curl -s -o /dev/null -w "admin create under lock: %{http_code} %{time_total}s\n" -X POST -H "Authorization: Bearer $TOKEN" -d '{"name":"x"}' http://$ADMIN/tunnels &
sleep 0.3
curl -s -o /dev/null -w "GET under lock: %{http_code} %{time_total}s\n" -H 'Host: app.test' http://$PUB/
T0=$(date +%s.%N)
$R tunnel run $TID --edge $SRV --url http://$ORIGIN --ha-connections 1 > $D/c2.log 2>&1 &
C2=$!
for i in $(seq 600); do grep -q 'link registered' $D/c2.log && break; grep -qi 'refused\|error' $D/c2.log && break; sleep 0.02; done
T1=$(date +%s.%N)
echo "second connector: $(grep -c 'link registered' $D/c2.log) link registered after $(echo "$T1 - $T0" | bc)s (process start included); $(grep -ci 'refused' $D/c2.log) refusals"
curl -s -o /dev/null -w "GET under lock: %{http_code} %{time_total}s\n" -H 'Host: app.test' http://$PUB/
cat $D/c2.log | cut -c1-160 | head -12
wait $LP
sleep 1
kill $C1 $C2 $EP $OP; wait 2>/dev/null
