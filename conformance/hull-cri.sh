#!/usr/bin/env bash
# Runs hull-cri as a node would, for the CRI end-to-end tests and the demo.
# Usage: hull-cri.sh start|stop|status [--bin DIR] [--root DIR] [--run DIR] [--socket PATH]
#                    [--registry HOST:PORT]
#   start  writes the daemon config (registry mirrors for the names the tests pull, all
#          served by conformance/registry.sh, by default on 127.0.0.1:5000), then starts
#          hull-cri in its own session and waits for its socket. Idempotent.
#   stop   SIGTERM, then waits for the daemon to exit. Containers keep running (that is the
#          design); use crictl rmp first to remove them.
#   --bin  the directory holding hull-cri, hull-cri-monitor, hull-cri-pinns and hull
#          (default target/debug).
#   --run  the daemon's volatile state (namespace pins, runtime state; default /run/hull-cri).
#          A second daemon beside another one needs its own --root, --run and --socket.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=$here/../target/debug
root=/var/lib/hull-cri-test
socket=/run/hull/cri.sock
run=/run/hull-cri
registry=127.0.0.1:5000
cmd=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
    case $1 in
        --bin) bin=${2:?}; shift 2 ;;
        --root) root=${2:?}; shift 2 ;;
        --socket) socket=${2:?}; shift 2 ;;
        --run) run=${2:?}; shift 2 ;;
        --registry) registry=${2:?}; shift 2 ;;
        *) echo "hull-cri.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
# Resolved when present: stop and status do not need the binaries.
[ -d "$bin" ] && bin=$(cd "$bin" && pwd)
config=$root/cri.toml
log=$root/hull-cri.log

log() { echo "hull-cri.sh: $*" >&2; }

daemon_pid() {
    local p
    for p in $(pgrep -x hull-cri || true); do
        if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--listen $socket "; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# The command that starts the daemon; crictl-e2e.sh uses it again to restart after kill -9.
start_cmd() {
    echo "setsid $bin/hull-cri --listen $socket --root $root --run $run --config $config --runtime $bin/hull >>$log 2>&1 </dev/null &"
}

start() {
    if daemon_pid >/dev/null; then
        log "already running (pid $(daemon_pid))"
        return 0
    fi
    mkdir -p "$root"
    cat >"$config" <<TOML
# Written by conformance/hull-cri.sh: every registry the tests name is served by the local
# registry (conformance/registry.sh); image names keep the names asked for.
[registries."registry.k8s.io"]
mirrors = ["http://$registry"]
[registries."k8s.gcr.io"]
mirrors = ["http://$registry"]
[registries."gcr.io"]
mirrors = ["http://$registry"]
[registries."docker.io"]
mirrors = ["http://$registry"]
TOML
    eval "$(start_cmd)"
    for _ in $(seq 100); do
        [ -S "$socket" ] && daemon_pid >/dev/null && { log "started (pid $(daemon_pid)), log $log"; return 0; }
        sleep 0.1
    done
    log "hull-cri did not create $socket in 10 s; its log:"
    tail -n 20 "$log" >&2
    return 1
}

stop() {
    local pid
    pid=$(daemon_pid) || { log "not running"; return 0; }
    kill -TERM "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { log "stopped"; return 0; }
        sleep 0.1
    done
    log "hull-cri (pid $pid) did not exit 10 s after SIGTERM"
    return 1
}

case $cmd in
    start) start ;;
    stop) stop ;;
    status) if pid=$(daemon_pid); then echo "running: pid $pid"; else echo "not running"; exit 1; fi ;;
    start-cmd) start_cmd ;;
    *) echo "usage: hull-cri.sh start|stop|status|start-cmd [--bin DIR] [--root DIR] [--run DIR] [--socket PATH] [--registry HOST:PORT]" >&2; exit 2 ;;
esac
