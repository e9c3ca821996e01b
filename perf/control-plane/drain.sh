#!/bin/bash
# Usage: drain.sh BINDIR — SIGTERM to the edge with 3 GETs and a 200 KB POST in flight to a
# 6 s origin; prints each request's status and time, whether new connections are refused, and
# the edge's exit code and time.
set -u
BIN=$1; D=$(mktemp -d); mkdir -p $D/home
$BIN/ringtun-edge --state-dir $D/state --admin 127.0.0.1:0 --public-http 127.0.0.1:0 \
  --data-center dfw=127.0.1.1:0 --workers 2 2> $D/edge.log &
EP=$!
for i in $(seq 100); do grep -q "admin API listening" $D/edge.log && break; sleep 0.1; done
ADMIN=$(grep -o 'admin=[0-9.:]*' $D/edge.log | head -1 | cut -d= -f2)
PUB=$(grep -o 'public_http=[0-9.:]*' $D/edge.log | head -1 | cut -d= -f2)
TOKEN=$(cat $D/state/admin-token)
R="env HOME=$D/home RINGTUN_API_TOKEN=$TOKEN $BIN/ringtun --edge-api $ADMIN"
$R tunnel create web > /dev/null; $R tunnel route dns web app.test > /dev/null
$BIN/ringtun-load origin --http 127.0.0.1:0 --threads 1 --no-pin --delay 6s > $D/origin.log 2>&1 &
OP=$!
for i in $(seq 100); do grep -qo '127.0.0.1:[0-9]*' $D/origin.log && break; sleep 0.1; done
ORIGIN=$(grep -o '127.0.0.1:[0-9]*' $D/origin.log | head -1)
$R tunnel run web --url http://$ORIGIN > $D/c1.log 2>&1 &
CP=$!
for i in $(seq 300); do [ "$(grep -c 'link registered' $D/c1.log)" -ge 4 ] && break; sleep 0.1; done
head -c 204800 /dev/zero | tr '\0' x > $D/body
for i in 1 2 3; do curl -s -o /dev/null -w "GET $i: %{http_code} after %{time_total}s\n" -H 'Host: app.test' http://$PUB/get$i > $D/r$i & done
curl -s -o /dev/null -w "POST 200KB: %{http_code} after %{time_total}s\n" -H 'Host: app.test' --data-binary @$D/body http://$PUB/post > $D/r4 &
sleep 2
T0=$(date +%s.%N); kill -TERM $EP
sleep 0.5
curl -s -o /dev/null -w "new connection 0.5 s after SIGTERM: %{http_code} (000 = refused)\n" -H 'Host: app.test' http://$PUB/new
wait $EP; RC=$?; T1=$(date +%s.%N)
sleep 0.5
cat $D/r1 $D/r2 $D/r3 $D/r4
echo "edge exit code $RC, $(echo "$T1 - $T0" | bc) s after SIGTERM"
kill $CP $OP; wait 2>/dev/null
