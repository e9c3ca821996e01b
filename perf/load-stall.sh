#!/usr/bin/env bash
# The coordinated-omission check from the CLI: the origin is SIGSTOPped for 1 s in the middle of
# a 2,000 req/s run over 10 connections. Corrected p99 must show the stall (~1 s), uncorrected
# must not. Writes stall.{txt,json,hgrm,svg} under perf/results/load/.
set -euo pipefail
cd "$(dirname "$0")/.."
R=perf/results/load
cargo build --release -p ringtun-benches --locked
BIN=target/release/ringtun-load
TMP=$(mktemp -d)
taskset -c 1 "$BIN" origin --http 127.0.0.1:0 --threads 1 >"$TMP/origin.out" 2>/dev/null &
ORIGIN=$!
trap 'kill -CONT $ORIGIN 2>/dev/null; kill $ORIGIN 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do grep -q listening "$TMP/origin.out" && break; sleep 0.1; done
URL="http://$(awk '/listening http/{print $3}' "$TMP/origin.out")/"
(sleep 2; kill -STOP $ORIGIN; sleep 1; kill -CONT $ORIGIN) &
STOPPER=$!
taskset -c 0 "$BIN" http "$URL" -R 2000 -c 10 -t 1 -d 5s -q \
  --json $R/stall.json --hgrm $R/stall.hgrm --plot $R/stall.svg | tee $R/stall.txt
wait $STOPPER
