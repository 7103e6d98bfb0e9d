#!/usr/bin/env bash
# A private containerd (Debian's, with its CRI plugin, runc and Debian's CNI plugins) as the
# reference CRI runtime: the CRI test scripts (crictl-e2e.sh, kubelet/) can be run against it
# to tell a test's fault from hull-cri's. Registry mirrors send registry.k8s.io, k8s.gcr.io,
# gcr.io and docker.io to the local registry (registry.sh), paths kept, as hull-cri does.
# Usage: containerd-cri.sh start|stop|status [--dir DIR] [--registry 127.0.0.1:5000]
#                          [--cni-conf-dir DIR]
#   DIR (default /tmp/hull-containerd-cri) holds config.toml, root/, state/, the CNI config
#   (net.d/: bridge "hullref0", 10.77.0.0/24, portmap), the mirrors (certs.d/), containerd.log
#   and the socket DIR/containerd.sock. stop stops containerd and every pod it runs.
#   --cni-conf-dir  use this CNI config directory instead of DIR/net.d (critest-compare.sh
#                   gives containerd hull-cri's /etc/cni/net.d, so both run the same network)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=/tmp/hull-containerd-cri
registry=127.0.0.1:5000
cni_conf_dir=
cmd=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
    case $1 in
        --dir) dir=${2:?}; shift 2 ;;
        --registry) registry=${2:?}; shift 2 ;;
        --cni-conf-dir) cni_conf_dir=${2:?}; shift 2 ;;
        *) echo "containerd-cri.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
sock=$dir/containerd.sock
pidfile=$dir/containerd.pid
crictl_bin=$here/work/bin/crictl

log() { echo "containerd-cri.sh: $*" >&2; }

# True while process $1 exists and is not a zombie (a child that died but is not reaped yet).
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }

running_pid() {
    local pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "containerd --config $dir/config.toml" || return 1
    echo "$pid"
}

write_config() {
    mkdir -p "$dir/net.d" "$dir/root" "$dir/state"
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  # This machine withholds CAP_SYS_RESOURCE, so oom_score_adj cannot go below its current
  # value (containerd gives sandboxes -998): keep containers' values at or above our own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${cni_conf_dir:-$dir/net.d}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
    cat >"$dir/net.d/10-hullref.conflist" <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "hullref",
  "plugins": [
    {"type": "bridge", "bridge": "hullref0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    local host
    for host in registry.k8s.io k8s.gcr.io gcr.io docker.io; do
        mkdir -p "$dir/certs.d/$host"
        printf 'server = "https://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
            "$host" "$registry" >"$dir/certs.d/$host/hosts.toml"
    done
}

start() {
    local pid
    if pid=$(running_pid); then log "already running (pid $pid), endpoint unix://$sock"; return 0; fi
    command -v containerd >/dev/null || { log "containerd is not installed (scripts/deps.sh)"; exit 1; }
    write_config
    setsid containerd --config "$dir/config.toml" </dev/null >>"$dir/containerd.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 100); do
        [ -S "$sock" ] && { log "started (pid $(cat "$pidfile")), endpoint unix://$sock"; return 0; }
        alive "$(cat "$pidfile")" || { log "containerd exited; see $dir/containerd.log"; tail -n 20 "$dir/containerd.log" >&2; exit 1; }
        sleep 0.1
    done
    log "no socket $sock after 10 s; see $dir/containerd.log"
    exit 1
}

stop() {
    local pid id
    if pid=$(running_pid); then
        if [ -x "$crictl_bin" ]; then
            for id in $("$crictl_bin" --config /dev/null -r "unix://$sock" pods -q 2>/dev/null); do
                "$crictl_bin" --config /dev/null -r "unix://$sock" stopp "$id" >/dev/null 2>&1 || true
                "$crictl_bin" --config /dev/null -r "unix://$sock" rmp -f "$id" >/dev/null 2>&1 || true
            done
        fi
        kill "$pid"
        for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        [ ! -d "/proc/$pid" ] || kill -9 "$pid"
        log "stopped (pid $pid)"
    else
        log "not running"
    fi
    rm -f "$pidfile"
    # Snapshots stay mounted under root/ after a kill; unmount so the directory can go.
    { grep -o " $dir/[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

case $cmd in
    start) start ;;
    stop) stop ;;
    status) if pid=$(running_pid); then echo "running: pid $pid, endpoint unix://$sock"; else echo "not running"; exit 1; fi ;;
    *) echo "usage: containerd-cri.sh start|stop|status [--dir DIR] [--registry HOST:PORT]" >&2; exit 2 ;;
esac
