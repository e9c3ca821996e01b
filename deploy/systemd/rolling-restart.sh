#!/bin/sh
# Restarts the running ringtun@N instances one at a time, e.g. after installing a new binary or
# changing a flag, so the tunnel always keeps ready connectors on this host:
#
#   1. check that another instance is ready (never stop the last one that serves);
#   2. `systemctl restart ringtun@N`: SIGTERM, the old process drains (the edge routes nothing
#      new to it from its first GOAWAY; open requests get up to --grace-period), exits, and the
#      new process starts;
#   3. wait until `ringtun tunnel ready` says the new process has a link registered, plus a few
#      seconds for its other links, before the next instance.
#
# Usage: rolling-restart.sh [SECONDS_TO_WAIT_FOR_READY]   (default 60; run as root)
set -eu

timeout=${1:-60}
settle=${RINGTUN_SETTLE_SECONDS:-5}
ringtun=${RINGTUN_BIN:-/usr/local/bin/ringtun}

# The --metrics address of a running instance, from its environment (RINGTUN_METRICS, set by
# ringtun@.service or its ringtun@N.env).
metrics_of() {
    pid=$(systemctl show --property=MainPID --value "$1")
    [ "$pid" != 0 ] || return 1
    tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^RINGTUN_METRICS=//p'
}

ready() {
    addr=$(metrics_of "$1") || return 1
    [ -n "$addr" ] && "$ringtun" tunnel ready --metrics "$addr" >/dev/null 2>&1
}

units=$(systemctl list-units --plain --no-legend --state=active 'ringtun@*.service' | awk '{print $1}')
if [ -z "$units" ]; then
    echo "no active ringtun@ instances" >&2
    exit 1
fi
if [ "$(echo "$units" | wc -l)" -lt 2 ]; then
    echo "only one instance runs: restarting it leaves the tunnel without this host's connector" >&2
fi

for unit in $units; do
    others_ready=0
    for other in $units; do
        if [ "$other" != "$unit" ] && ready "$other"; then
            others_ready=$((others_ready + 1))
        fi
    done
    if [ "$others_ready" -eq 0 ] && [ "$(echo "$units" | wc -l)" -gt 1 ]; then
        echo "no other instance is ready; not stopping $unit" >&2
        exit 1
    fi

    echo "restarting $unit (drains for up to its --grace-period)"
    systemctl restart "$unit"

    waited=0
    until ready "$unit"; do
        if [ "$waited" -ge "$timeout" ]; then
            echo "$unit is not ready after ${timeout}s; stopping the rollout" >&2
            addr=$(metrics_of "$unit" || true)
            [ -n "$addr" ] && "$ringtun" tunnel ready --metrics "$addr" >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "$unit is ready"
    sleep "$settle"
done
echo "all instances restarted"
