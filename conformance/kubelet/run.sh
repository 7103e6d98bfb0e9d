#!/usr/bin/env bash
# A stock kubelet in standalone mode (no API server, no --kubeconfig): it runs the static
# pods in DIR/manifests against a CRI runtime.
# Usage: run.sh start|stop|status [--endpoint unix:///run/hull/cri.sock] [--dir DIR]
#                                 [--kubelet PATH] [--no-pod]
#   --endpoint  the CRI socket (containerRuntimeEndpoint; images are served by the same one)
#   --dir       state directory (default conformance/work/kubelet): kubelet.yaml, root/ (the
#               kubelet's --root-dir), manifests/, kubelet.log, kubelet.pid
#   --kubelet   the kubelet binary (default conformance/work/bin/kubelet, from tools.sh)
#   --no-pod    start with an empty manifests/ instead of the headline pod (pod.yaml here)
# start waits for the kubelet's healthz; it does not wait for the runtime (check.sh does).
# stop removes the static pods first and waits up to 60 s for the kubelet to stop them (asking
# the runtime with crictl from tools.sh), stops the kubelet, then removes the stopped
# sandboxes, so nothing is left in the runtime. stop takes the same --endpoint and --dir.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
endpoint=unix:///run/hull/cri.sock
dir=$here/../work/kubelet
kubelet=$here/../work/bin/kubelet
crictl_bin=$here/../work/bin/crictl
pod=1
cmd=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
    case $1 in
        --endpoint) endpoint=${2:?--endpoint needs a unix:// address}; shift 2 ;;
        --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
        --kubelet) kubelet=${2:?--kubelet needs a path}; shift 2 ;;
        --no-pod) pod=0; shift ;;
        *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case $endpoint in unix://*) ;; *) echo "run.sh: the endpoint must be unix://PATH: $endpoint" >&2; exit 2 ;; esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pidfile=$dir/kubelet.pid
readonly_url=http://127.0.0.1:10255
healthz=http://127.0.0.1:10248/healthz

log() { echo "run.sh: $*" >&2; }

# True while process $1 exists and is not a zombie (a child that died but is not reaped yet).
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }

running_pid() {
    local pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--config=$dir/kubelet.yaml" || return 1
    echo "$pid"
}

write_config() {
    # Field names: k8s.io/kubelet/config/v1beta1 (KubeletConfiguration) of the built kubelet.
    cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: $endpoint
staticPodPath: $dir/manifests
# Static pods are re-read every second, so a new manifest starts without delay.
fileCheckFrequency: 1s
syncFrequency: 10s
# This host: cgroup v1 (hybrid), the cgroupfs driver, no swap accounting wanted.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
# Loopback only: anonymous read access, GET $readonly_url/pods shows pod status.
address: 127.0.0.1
port: 10250
readOnlyPort: 10255
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
# A test machine's disk is often fuller than the defaults allow: no evictions, no image GC.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
}

start() {
    local pid
    if pid=$(running_pid); then log "already running (pid $pid), log $dir/kubelet.log"; return 0; fi
    [ -x "$kubelet" ] || { log "no kubelet at $kubelet (conformance/tools.sh kubelet)"; exit 1; }
    if curl -fsS -o /dev/null --max-time 2 "$healthz" 2>/dev/null; then
        log "another kubelet already answers on $healthz"
        exit 1
    fi
    mkdir -p "$dir/root" "$dir/manifests"
    write_config
    rm -f "$dir/manifests/"*.yaml
    if [ $pod = 1 ]; then
        # The static pod's uid, and so its log directory, is the same on every run: logs of an
        # earlier run would satisfy check.sh, so they go.
        rm -rf /var/log/pods/default_hull-headline-*_*
        cp "$here/pod.yaml" "$dir/manifests/hull-headline.yaml"
    fi
    : >"$dir/kubelet.log"
    setsid "$kubelet" --config="$dir/kubelet.yaml" --root-dir="$dir/root" --v=2 \
        </dev/null >>"$dir/kubelet.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 300); do
        if curl -fsS -o /dev/null --max-time 1 "$healthz" 2>/dev/null; then
            log "started (pid $(cat "$pidfile")), runtime $endpoint, log $dir/kubelet.log"
            return 0
        fi
        if ! alive "$(cat "$pidfile")"; then
            log "kubelet exited during start; last lines of $dir/kubelet.log:"
            tail -n 30 "$dir/kubelet.log" >&2
            rm -f "$pidfile"
            exit 1
        fi
        sleep 0.1
    done
    log "kubelet did not answer on $healthz within 30 s; see $dir/kubelet.log"
    exit 1
}

pods_left() {
    curl -fsS --max-time 2 "$readonly_url/pods" 2>/dev/null | jq '.items | length' 2>/dev/null || echo "?"
}

crictl() { "$crictl_bin" --config /dev/null --runtime-endpoint "$endpoint" --timeout 10s "$@"; }
# Sandboxes the kubelet made (it labels them with the pod uid), in state $1 (ready|notready).
kubelet_sandboxes() { crictl pods -q --state "$1" 2>/dev/null | while read -r id; do
    crictl inspectp -o json "$id" 2>/dev/null |
        jq -r --arg id "$id" 'select(.status.labels["io.kubernetes.pod.uid"] != null) | $id'
done; }

stop() {
    local pid left
    if ! pid=$(running_pid); then rm -f "$pidfile"; log "not running"; return 0; fi
    # Without its manifest the kubelet stops a static pod (containers, then sandbox). Its
    # /pods list drops the pod at once, so the runtime is asked when the pod has stopped.
    rm -f "$dir/manifests/"*.yaml
    if [ -x "$crictl_bin" ]; then
        for _ in $(seq 120); do
            left=$(kubelet_sandboxes ready)
            [ -z "$left" ] && break
            sleep 0.5
        done
        [ -z "$left" ] || log "warning: sandboxes still ready after 60 s: $left"
    else
        log "warning: no crictl at $crictl_bin; the kubelet is stopped without waiting for its pods"
    fi
    kill "$pid"
    for _ in $(seq 100); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    [ -d "/proc/$pid" ] && kill -9 "$pid"
    rm -f "$pidfile"
    # The kubelet bind-mounts its root dir on itself (to make it shared); undo that.
    grep -o " $dir/root[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount "$m" || umount -l "$m"; done
    # The kubelet's garbage collector would remove the stopped sandboxes later; it is gone.
    if [ -x "$crictl_bin" ]; then
        for id in $(kubelet_sandboxes notready); do crictl rmp "$id" >/dev/null 2>&1 || log "warning: rmp $id failed"; done
    fi
    log "stopped (pid $pid)"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    status)
        if pid=$(running_pid); then echo "running: pid $pid, pods listed: $(pods_left)"; else echo "not running"; exit 1; fi
        ;;
    *) echo "usage: run.sh start|stop|status [--endpoint unix:///run/hull/cri.sock] [--dir DIR] [--kubelet PATH] [--no-pod]" >&2; exit 2 ;;
esac
