#!/usr/bin/env bash
# End-to-end test of a CRI runtime through crictl: pull, images, inspecti, runp, create, start,
# ps, logs, exec --sync, stats, statsp, pod-to-pod traffic over the CNI bridge, recovery after
# the daemon is restarted (SIGTERM, then kill -9), stop, rm, stopp, rmp, rmi.
# Pod and container configs: conformance/crictl/*.json (busybox by its registry.k8s.io name,
# served through the runtime's registry mirror by conformance/images.sh).
#
# Usage: crictl-e2e.sh [--endpoint unix:///run/hull/cri.sock] [--crictl PATH]
#                      (--restart-cmd CMD | --no-restart)
#   --restart-cmd  a shell command that starts the daemon again after this script has killed
#                  it; it must return once the daemon is started or starting (for example
#                  "setsid hull-cri --listen /run/hull/cri.sock >>/tmp/hull-cri.log 2>&1 &").
#                  The daemon's pid is found as the process listening on the endpoint's socket.
#   --no-restart   skip the restart-recovery step (it then counts as skipped, not passed).
#   --daemon-writes-logs  for a reference runtime whose daemon copies container output to
#                  the log (containerd): do not require the log to grow while it is down.
#                  hull-cri's per-container monitor writes the log, so by default it must.
# Each step prints "ok <step>"; the first failing assertion prints "FAIL <step>: <why>" with
# what crictl said, and the script exits 1. Everything it created is removed at exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
endpoint=unix:///run/hull/cri.sock
crictl_bin=$here/work/bin/crictl
restart_cmd=""
no_restart=0
daemon_writes_logs=0
while [ $# -gt 0 ]; do
    case $1 in
        --endpoint) endpoint=${2:?}; shift 2 ;;
        --crictl) crictl_bin=${2:?}; shift 2 ;;
        --restart-cmd) restart_cmd=${2:?}; shift 2 ;;
        --no-restart) no_restart=1; shift ;;
        --daemon-writes-logs) daemon_writes_logs=1; shift ;;
        -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "crictl-e2e.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$restart_cmd" ] || [ $no_restart = 1 ] ||
    { echo "crictl-e2e.sh: give --restart-cmd CMD (how to start the daemon again) or --no-restart" >&2; exit 2; }
[ -x "$crictl_bin" ] || { echo "crictl-e2e.sh: no crictl at $crictl_bin (conformance/tools.sh crictl)" >&2; exit 1; }
socket=${endpoint#unix://}
cfg=$here/crictl
image=registry.k8s.io/e2e-test-images/busybox:1.29-2
image_repo=${image%:*}
work=$(mktemp -d /tmp/hull-crictl-e2e.XXXXXX)
: >"$work/crictl.yaml" # crictl reads /etc/crictl.yaml unless given another file
started=$(date +%s)
step_name=setup

crictl() {
    "$crictl_bin" --config "$work/crictl.yaml" --runtime-endpoint "$endpoint" \
        --image-endpoint "$endpoint" --timeout 60s "$@"
}

step() {
    step_name=$1
    echo "--- $1" >&2
}
ok() { echo "ok   $step_name${1:+: $1}"; }
fail() {
    echo "FAIL $step_name: $*" >&2
    [ ! -s "$work/out" ] || { echo "     last crictl output:" >&2; head -c 3000 "$work/out" | sed 's/^/     | /' >&2; }
    exit 1
}

# Runs crictl, keeping its stdout+stderr in $work/out; fails the step if crictl fails.
run() {
    crictl "$@" >"$work/out" 2>&1 || fail "crictl $* exited with $?"
    cat "$work/out"
}
# Runs crictl expecting failure; prints its output.
run_fails() {
    if crictl "$@" >"$work/out" 2>&1; then fail "crictl $* succeeded, expected an error"; fi
    cat "$work/out"
}
# Asserts jq filter $1 is true on JSON $2; $3 says what was expected.
assert() {
    jq -e "$1" <<<"$2" >/dev/null 2>&1 || {
        # inspect's verbose "info" would crowd out the status: show the status alone.
        jq 'if type == "object" and has("status") then {status} else . end' <<<"$2" >"$work/out" 2>/dev/null ||
            printf '%s\n' "$2" >"$work/out"
        fail "$3 (jq: $1)"
    }
}
# Retries shell command "$2" every 0.5 s for up to $1 seconds.
eventually() {
    local deadline=$(($(date +%s) + $1))
    while ! eval "$2" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

cleanup() {
    local rc=$? id
    set +e
    for id in $(crictl pods -q --namespace hull-e2e 2>/dev/null); do
        crictl stopp "$id" >/dev/null 2>&1
        crictl rmp -f "$id" >/dev/null 2>&1
    done
    rm -rf /var/log/hull-e2e "$work"
    # The pods' cgroup_parent (/hull-e2e/pod-X) is the caller's, as kubelet's pod cgroups are.
    rmdir /sys/fs/cgroup/*/hull-e2e/pod-* /sys/fs/cgroup/*/hull-e2e /sys/fs/cgroup/hull-e2e/pod-* /sys/fs/cgroup/hull-e2e 2>/dev/null
    if [ $rc = 0 ]; then
        echo "PASS crictl end-to-end ($(($(date +%s) - started)) s)"
    else
        echo "crictl end-to-end FAILED at step '$step_name' after $(($(date +%s) - started)) s" >&2
    fi
}
trap cleanup EXIT

# --- runtime ------------------------------------------------------------------------------
step version
out=$(run version)
grep -q '^RuntimeApiVersion: *v1$' <<<"$out" || fail "RuntimeApiVersion is not v1"
grep -Eq '^RuntimeName: *[^ ]+' <<<"$out" || fail "no RuntimeName"
ok "$(grep -E '^Runtime(Name|Version)' <<<"$out" | awk '{print $2}' | paste -sd' ')"

step info
out=$(run info -o json)
assert '[.status.conditions[] | select(.type == "RuntimeReady")][0].status == true' "$out" "RuntimeReady is not true"
assert '[.status.conditions[] | select(.type == "NetworkReady")][0].status == true' "$out" "NetworkReady is not true (CNI configured?)"
ok

# Leftovers of an earlier interrupted run would make the assertions below ambiguous.
for id in $(crictl pods -q --namespace hull-e2e 2>/dev/null); do crictl stopp "$id" >/dev/null; crictl rmp -f "$id" >/dev/null; done
rm -rf /var/log/hull-e2e
mkdir -p /var/log/hull-e2e/pod-a /var/log/hull-e2e/pod-b

# --- images -------------------------------------------------------------------------------
step pull
crictl rmi "$image" >/dev/null 2>&1 || true
out=$(run pull "$image")
image_id=$(sed -n 's/^Image is up to date for //p' <<<"$out")
[[ $image_id == sha256:* ]] || fail "pull did not print an image id: $out"
out=$(run pull "$image")
grep -qx "Image is up to date for $image_id" <<<"$out" || fail "a second pull gave another id"
ok "$image_id"

step images
out=$(run images -o json)
jq -e --arg id "$image_id" --arg n "$image" \
    '[.images[] | select(.id == $id)] | length == 1 and (.[0].repoTags | index($n) != null) and (.[0].size | tonumber) > 0' \
    <<<"$out" >/dev/null || { printf '%s\n' "$out" >"$work/out"; fail "images lists no $image with id $image_id and a size"; }
out=$(run images -q "$image")
grep -qx "$image_id" <<<"$out" || fail "images -q $image does not print $image_id"
ok

step inspecti
out=$(run inspecti -o json "$image")
jq -e --arg id "$image_id" --arg n "$image" --arg r "$image_repo@sha256:" '
    .status.id == $id and (.status.repoTags | index($n) != null)
    and (.status.repoDigests | any(startswith($r)))' <<<"$out" >/dev/null ||
    { printf '%s\n' "$out" >"$work/out"; fail "inspecti: wrong id, tags or digests"; }
digest_ref=$(jq -r --arg r "$image_repo@sha256:" '.status.repoDigests[] | select(startswith($r))' <<<"$out" | head -1)
out=$(run inspecti -o json "$digest_ref")
assert ".status.id == \"$image_id\"" "$out" "inspecti by digest $digest_ref gives another image"
out=$(run inspecti -o json "$image_id")
assert ".status.id == \"$image_id\"" "$out" "inspecti by id gives another image"
ok "$digest_ref"

# --- pod A with a long-running container ---------------------------------------------------
step runp
pod_a=$(run runp "$cfg/pod-a.json" | tail -1)
out=$(run inspectp -o json "$pod_a")
assert '.status.state == "SANDBOX_READY" and .status.metadata.name == "hull-e2e-a"' "$out" "pod A is not ready"
ip_a=$(jq -r '.status.network.ip // ""' <<<"$out")
[ -n "$ip_a" ] || fail "pod A has no IP"
assert '.status.labels["hull-e2e"] == "pod-a" and .status.annotations["hull-e2e/purpose"] != null' "$out" "labels or annotations lost"
ok "pod $pod_a ip $ip_a"

step create
ctr=$(run create "$pod_a" "$cfg/ctr-sleeper.json" "$cfg/pod-a.json" | tail -1)
out=$(run inspect -o json "$ctr")
assert '.status.state == "CONTAINER_CREATED"' "$out" "a new container is not CREATED"
assert ".status.imageRef == \"$image_id\" or (.status.imageRef | startswith(\"$image_repo@\"))" "$out" "imageRef is neither the id nor a digest of $image"
assert '.status.logPath == "/var/log/hull-e2e/pod-a/sleeper.log"' "$out" "logPath is not log_directory/log_path"
ok "$ctr"

step start
run start "$ctr" >/dev/null
out=$(run inspect -o json "$ctr")
assert '.status.state == "CONTAINER_RUNNING" and (.status.startedAt | startswith("1970") | not)' "$out" "container is not RUNNING with a start time"
ok

step ps
out=$(run ps -o json)
assert "[.containers[] | select(.id == \"$ctr\" and .state == \"CONTAINER_RUNNING\" and .podSandboxId == \"$pod_a\")] | length == 1" "$out" "ps does not list the running container"
out=$(run ps -q --label hull-e2e=sleeper)
[ "$out" = "$ctr" ] || fail "ps --label hull-e2e=sleeper printed '$out'"
out=$(run ps -q --pod "$pod_a" --state running)
[ "$out" = "$ctr" ] || fail "ps --pod --state running printed '$out'"
out=$(run pods -o json --label hull-e2e=pod-a)
assert "[.items[] | select(.id == \"$pod_a\" and .state == \"SANDBOX_READY\")] | length == 1" "$out" "pods does not list pod A as ready"
ok

step logs
eventually 15 "crictl logs $ctr 2>&1 | grep -q 'tick 2'" || { run logs "$ctr" >/dev/null; fail "no 'tick 2' in the log after 15 s"; }
out=$(run logs "$ctr")
grep -qx 'hull-e2e: hello from sleeper' <<<"$out" || fail "crictl logs lacks the first line"
out=$(run logs --tail 1 "$ctr")
[ "$(wc -l <<<"$out")" = 1 ] && grep -q '^tick [0-9]*$' <<<"$out" || fail "logs --tail 1 printed '$out'"
first=$(head -1 /var/log/hull-e2e/pod-a/sleeper.log)
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+) stdout F hull-e2e: hello from sleeper$' <<<"$first" ||
    fail "the log file's first line is not in the CRI format: '$first'"
ok

step exec
out=$(run exec --sync "$ctr" sh -c 'echo to-stdout; echo to-stderr >&2')
grep -qx to-stdout <<<"$out" && grep -qx to-stderr <<<"$out" || fail "exec output lacks stdout or stderr"
out=$(run exec --sync "$ctr" hostname)
grep -qx hull-e2e-a <<<"$out" || fail "hostname in pod A is not hull-e2e-a"
out=$(run_fails exec --sync "$ctr" sh -c 'exit 3')
grep -q 'exited with 3' <<<"$out" || fail "a command exiting 3 was not reported as such"
t=$(date +%s)
run_fails exec --sync --timeout 2 "$ctr" sleep 30 >/dev/null
[ $(($(date +%s) - t)) -lt 15 ] || fail "exec --timeout 2 of 'sleep 30' took $(($(date +%s) - t)) s"
out=$(run_fails exec --sync "$ctr" /no/such/binary)
ok

step stats
eventually 15 "crictl stats -o json --id $ctr | jq -e '.stats[0].cpu.usageCoreNanoSeconds.value | tonumber > 0'" ||
    { run stats -o json --id "$ctr" >/dev/null; fail "no CPU usage for the running container"; }
out=$(run stats -o json --id "$ctr")
assert '(.stats[0].memory.workingSetBytes.value | tonumber) > 0' "$out" "no memory working set"
assert ".stats[0].attributes.id == \"$ctr\"" "$out" "stats are for another container"
out=$(run statsp -o json --id "$pod_a")
assert ".stats[0].attributes.id == \"$pod_a\" and ((.stats[0].linux.cpu.usageCoreNanoSeconds.value // \"0\") | tonumber) > 0" "$out" "no pod CPU stats"
ok

step exited-container
ctr_x=$(run create "$pod_a" "$cfg/ctr-exiter.json" "$cfg/pod-a.json" | tail -1)
run start "$ctr_x" >/dev/null
eventually 15 "crictl inspect -o json $ctr_x | jq -e '.status.state == \"CONTAINER_EXITED\"'" || fail "exiter did not exit"
out=$(run inspect -o json "$ctr_x")
assert '.status.exitCode == 7 and .status.reason == "Error" and (.status.finishedAt | startswith("1970") | not)' "$out" "exit code 7, reason Error and a finish time expected"
grep -q 'stderr F hull-e2e: exiting with 7' /var/log/hull-e2e/pod-a/exiter.log || fail "exiter's stderr line is not in its log"
run rm "$ctr_x" >/dev/null
ok

# --- pod B serves HTTP; pod A fetches it over the bridge -----------------------------------
step pod-to-pod
pod_b=$(run runp "$cfg/pod-b.json" | tail -1)
ip_b=$(run inspectp -o json "$pod_b" | jq -r '.status.network.ip // ""')
[ -n "$ip_b" ] && [ "$ip_b" != "$ip_a" ] || fail "pod B's IP '$ip_b' is empty or pod A's"
ctr_b=$(run create "$pod_b" "$cfg/ctr-httpd.json" "$cfg/pod-b.json" | tail -1)
run start "$ctr_b" >/dev/null
# No wget -T: Debian's busybox-static 1.35 wget segfaults with -T; crictl's --timeout bounds it.
fetch="crictl exec --sync --timeout 5 $ctr wget -q -O - http://$ip_b:80/ 2>&1 | grep -qx hull-e2e-pong"
eventually 20 "$fetch" || { run_fails exec --sync --timeout 5 "$ctr" wget -q -O - "http://$ip_b:80/" >/dev/null; fail "pod A cannot fetch http://$ip_b:80/ from pod B"; }
ok "$ip_a -> $ip_b:80"

# --- restart recovery ---------------------------------------------------------------------
daemon_pid() { # the process listening on the endpoint's socket
    ss -xlpn 2>/dev/null | awk -v s="$socket" '$5 == s' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}
ticks() { crictl logs --tail 1 "$ctr" 2>/dev/null | sed -n 's/^tick //p'; }
restart_with() { # signal
    local sig=$1 pid before
    pid=$(daemon_pid)
    [ -n "$pid" ] || fail "no process listens on $socket"
    before=$(ticks)
    kill "-$sig" "$pid"
    eventually 30 "[ ! -d /proc/$pid ]" || fail "the daemon (pid $pid) did not exit after SIG$sig"
    sleep 2 # containers must keep running, and their monitors logging, while no daemon runs
    if [ $daemon_writes_logs = 0 ]; then
        grep -q "tick $((before + 1))" /var/log/hull-e2e/pod-a/sleeper.log ||
            fail "the container's log stopped while the daemon was down (last tick $before)"
    fi
    sh -c "$restart_cmd" || fail "--restart-cmd failed with $?"
    eventually 60 "crictl version" || fail "the daemon did not answer within 60 s of --restart-cmd"
    out=$(run pods -o json --namespace hull-e2e)
    assert "[.items[] | select(.state == \"SANDBOX_READY\") | .id] | sort == ([\"$pod_a\", \"$pod_b\"] | sort)" "$out" "pods A and B are not both listed as ready after SIG$sig"
    out=$(run inspectp -o json "$pod_a")
    assert ".status.network.ip == \"$ip_a\"" "$out" "pod A's IP changed after SIG$sig"
    # (ps --namespace matches a label only kubelet sets, so filter by pod here.)
    out=$(run ps -o json)
    assert "[.containers[] | select(.podSandboxId == \"$pod_a\" or .podSandboxId == \"$pod_b\") | select(.state == \"CONTAINER_RUNNING\") | .id] | sort == ([\"$ctr\", \"$ctr_b\"] | sort)" "$out" "the containers are not both listed as running after SIG$sig"
    out=$(run exec --sync "$ctr" echo alive)
    grep -qx alive <<<"$out" || fail "exec after SIG$sig printed '$out'"
    eventually 20 "$fetch" || fail "pod A cannot reach pod B after SIG$sig"
    before=$(ticks)
    eventually 10 "[ \"\$(ticks)\" -gt $before ]" || fail "crictl logs shows no new line after SIG$sig"
    out=$(run inspecti -o json "$image")
    assert ".status.id == \"$image_id\"" "$out" "the image is gone after SIG$sig"
}
step restart-recovery
if [ $no_restart = 1 ]; then
    echo "skip restart-recovery (--no-restart)"
else
    restart_with TERM
    restart_with KILL
    ok "SIGTERM and kill -9: pods, containers, IPs, exec, logs and the image survive"
fi

# --- teardown -----------------------------------------------------------------------------
step stop
t=$(date +%s)
run stop --timeout 10 "$ctr" >/dev/null
out=$(run inspect -o json "$ctr")
assert '.status.state == "CONTAINER_EXITED" and (.status.exitCode == 143 or .status.exitCode == 137)' "$out" "stop did not end the container by a signal"
[ $(($(date +%s) - t)) -lt 10 ] || fail "stop of a container that handles SIGTERM took $(($(date +%s) - t)) s"
run stop "$ctr" >/dev/null
# A container that ignores SIGTERM must get SIGKILL when the timeout expires.
ctr_s=$(run create "$pod_a" "$cfg/ctr-stubborn.json" "$cfg/pod-a.json" | tail -1)
run start "$ctr_s" >/dev/null
eventually 10 "grep -q 'ignoring SIGTERM' /var/log/hull-e2e/pod-a/stubborn.log" || fail "the stubborn container did not start"
t=$(date +%s%N)
run stop --timeout 2 "$ctr_s" >/dev/null
ms=$((($(date +%s%N) - t) / 1000000))
out=$(run inspect -o json "$ctr_s")
assert '.status.state == "CONTAINER_EXITED" and .status.exitCode == 137' "$out" "a container ignoring SIGTERM was not SIGKILLed (137)"
[ $ms -ge 1900 ] && [ $ms -lt 12000 ] || fail "stop --timeout 2 of a container ignoring SIGTERM took $ms ms"
run rm "$ctr_s" >/dev/null
ok "exit by SIGTERM; SIGKILL after the 2 s timeout ($ms ms); a second stop succeeds"

step rm
run rm "$ctr" >/dev/null
out=$(run ps -a -q --pod "$pod_a")
[ -z "$out" ] || fail "ps -a still lists '$out' in pod A"
run_fails inspect "$ctr" >/dev/null
ok

step stopp
run stopp "$pod_a" >/dev/null
out=$(run inspectp -o json "$pod_a")
assert '.status.state == "SANDBOX_NOTREADY"' "$out" "pod A is not NOTREADY after stopp"
run stopp "$pod_a" >/dev/null
out=$(run ps -a -o json --pod "$pod_b")
run stopp "$pod_b" >/dev/null
out=$(run ps -a -o json --pod "$pod_b")
assert '[.containers[] | select(.state == "CONTAINER_RUNNING")] | length == 0' "$out" "pod B's container still runs after stopp"
ok "stopp twice succeeds; stopp stops the pod's containers"

step rmp
run rmp "$pod_a" >/dev/null
run rmp "$pod_b" >/dev/null
out=$(run pods -q --namespace hull-e2e)
[ -z "$out" ] || fail "pods still lists '$out'"
out=$(run ps -a -o json)
assert "[.containers[] | select(.podSandboxId == \"$pod_a\" or .podSandboxId == \"$pod_b\")] | length == 0" "$out" "ps -a still lists containers of the removed pods"
ok

step rmi
run rmi "$image" >/dev/null
out=$(run images -q)
! grep -qx "$image_id" <<<"$out" || fail "images still lists $image_id"
run_fails inspecti "$image" >/dev/null
ok
step done
