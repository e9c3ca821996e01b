#!/bin/bash
# Usage: idle.sh BINDIR N [plaintext] — edge RSS with N idle connections to a link port.
set -u
BIN=$1; N=$2; PLAIN=${3:-}; D=$(mktemp -d)
$BIN/ringtun-edge --state-dir $D/state --admin 127.0.0.1:0 --public-http 127.0.0.1:0 \
  --data-center dfw=127.0.1.1:0 --workers 2 --metrics 127.0.0.1:0 ${PLAIN:+--danger-plaintext-links} 2> $D/edge.log &
EP=$!
for i in $(seq 100); do grep -q "admin API listening" $D/edge.log && break; sleep 0.1; done
SRV=$(grep -o 'server=[0-9.:]*' $D/edge.log | head -1 | cut -d= -f2)
MET=$(grep -o 'metrics=[0-9.:]*' $D/edge.log | head -1 | cut -d= -f2)
echo "idle RSS: $(grep VmRSS /proc/$EP/status)"
python3 - $SRV $N $EP <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1); n = int(sys.argv[2]); pid = sys.argv[3]
socks = []
for i in range(n):
    s = socket.socket(); s.connect((host, int(port))); socks.append(s)
    if not (len(socks) % 1000): time.sleep(0.05)
time.sleep(2)
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].strip()
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1, socket.MSG_PEEK) == b"": closed += 1
    except BlockingIOError: pass
    except OSError: closed += 1
print(f"{n} idle connections held 2 s: {rss}; closed by the edge: {closed}")
PY
curl -s http://$MET/metrics | grep 'limit_hits_total{reason="pending_handshakes"}'
echo "log lines: $(grep -c 'handshake timed out\|limit reached' $D/edge.log) (timeouts/limit lines so far)"
sleep 11
echo "after 13 s: $(grep -c 'INFO.*link refused\|INFO.*timed out' $D/edge.log) per-connection INFO lines (refused/timed out); limit lines: $(grep -c 'limit reached' $D/edge.log); $(grep VmRSS /proc/$EP/status)"
kill $EP; wait 2>/dev/null
