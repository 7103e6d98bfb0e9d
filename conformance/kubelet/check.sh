#!/usr/bin/env bash
# Checks the headline static pod (pod.yaml) that run.sh gave the kubelet:
#   1. the kubelet's read-only API (GET 127.0.0.1:10255/pods) shows it Running, both
#      containers known;
#   2. main's log under the pod log directory holds "hull-headline: main started";
#   3. the exec liveness probe ran (main logs "probes: N" with N >= 2) and passes: main is
#      not restarted and stays running over --watch seconds (default 20);
#   4. exiter, which exits with status 3, was restarted (restartCount >= 1) and its last
#      termination has exit code 3.
# Usage: check.sh [--timeout 180] [--watch 20] [--logs /var/log/pods] [--kubelet-log FILE]
# Exits 0 when all hold; otherwise prints what it saw (pod status, logs, kubelet errors).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
timeout=180
watch=20
logs=/var/log/pods
kubelet_log=$here/../work/kubelet/kubelet.log
while [ $# -gt 0 ]; do
    case $1 in
        --timeout) timeout=${2:?}; shift 2 ;;
        --watch) watch=${2:?}; shift 2 ;;
        --logs) logs=${2:?}; shift 2 ;;
        --kubelet-log) kubelet_log=${2:?}; shift 2 ;;
        *) echo "check.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
url=http://127.0.0.1:10255/pods
started=$(date +%s)

say() { echo "check.sh: $*" >&2; }

# The pod's JSON from the kubelet ("" when the kubelet does not answer or lists no such pod).
pod_json() {
    curl -fsS --max-time 5 "$url" 2>/dev/null |
        jq -c '[.items[] | select(.metadata.name | startswith("hull-headline-"))][0] // empty' 2>/dev/null || true
}
# A field of a container's status: ctr jq-filter
cstatus() { jq -r --arg n "$1" ".status.containerStatuses // [] | .[] | select(.name == \$n) | $2" <<<"$pod"; }

main_log() {
    local f
    f=$(compgen -G "$logs/default_hull-headline-*_*/main/*.log" | sort -V | tail -1) || true
    [ -n "$f" ] && cat "$f"
}

fail() {
    say "FAILED: $*"
    say "after $(($(date +%s) - started)) s. What was seen:"
    if [ -n "${pod:-}" ]; then
        jq '{phase: .status.phase, conditions: [.status.conditions[]? | {type, status, reason, message}],
             containers: [.status.containerStatuses[]? | {name, ready, restartCount, state, lastState, imageID}]}' <<<"$pod" >&2
    else
        say "the kubelet lists no hull-headline pod at $url"
        curl -sS --max-time 5 "$url" 2>&1 | head -c 2000 >&2 || true
    fi
    say "pod log files:"
    ls -lR "$logs"/default_hull-headline-* 2>&1 | head -20 >&2 || true
    say "main's log (last 10 lines):"
    main_log | tail -n 10 >&2 || true
    if [ -f "$kubelet_log" ]; then
        say "kubelet errors and warnings (last 25, $kubelet_log):"
        grep -E '^[EW][0-9]{4}' "$kubelet_log" | tail -n 25 >&2 || true
    fi
    exit 1
}

# Polls until the named condition (a shell function) holds, or the overall timeout passes.
wait_for() { # description function
    while true; do
        pod=$(pod_json)
        if [ -n "$pod" ] && "$2"; then
            say "ok: $1 ($(($(date +%s) - started)) s)"
            return 0
        fi
        [ $(($(date +%s) - started)) -lt "$timeout" ] || fail "timed out after $timeout s waiting for: $1"
        sleep 2
    done
}

curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:10248/healthz || fail "the kubelet does not answer on 127.0.0.1:10248/healthz (run.sh start)"

running() {
    [ "$(jq -r .status.phase <<<"$pod")" = Running ] && [ "$(cstatus main '.state | has("running")')" = true ]
}
wait_for "pod Running, main running" running

logged() { main_log 2>/dev/null | grep -q 'hull-headline: main started'; }
wait_for "main's log holds its first line" logged

probes() { main_log 2>/dev/null | grep -o 'probes: [0-9]*' | tail -1 | awk '{print $2}'; }
probed() { [ "$(probes)" -ge 2 ] 2>/dev/null; }
wait_for "the exec liveness probe ran at least twice" probed

restarted() { [ "$(cstatus exiter .restartCount)" -ge 1 ] 2>/dev/null; }
wait_for "exiter restarted by the restart policy" restarted
code=$(cstatus exiter '(.lastState.terminated.exitCode // .state.terminated.exitCode) // "none"')
[ "$code" = 3 ] || fail "exiter's last exit code is $code, expected 3"
say "ok: exiter's exit code is 3"

main_id=$(cstatus main .containerID)
before=$(probes)
end=$(($(date +%s) + watch))
while [ "$(date +%s)" -lt "$end" ]; do
    pod=$(pod_json)
    [ -n "$pod" ] || fail "the pod disappeared while watching main"
    [ "$(cstatus main .restartCount)" = 0 ] || fail "main was restarted: its liveness probe failed"
    [ "$(cstatus main .containerID)" = "$main_id" ] || fail "main's container id changed"
    [ "$(cstatus main '.state | has("running")')" = true ] || fail "main is no longer running"
    sleep 2
done
after=$(probes)
[ "$after" -gt "$before" ] || fail "the liveness probe stopped running during the watch (probes: $before -> $after)"
say "ok: main stayed running with 0 restarts for $watch s, probes $before -> $after"
say "PASS: headline static pod checks ($(($(date +%s) - started)) s)"
