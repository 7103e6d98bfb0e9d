#!/usr/bin/env bash
# A local image registry for the CRI tests: Debian's docker-registry (the distribution
# registry), plain HTTP, listening on 127.0.0.1 only.
# Usage: registry.sh start|stop|status [--port 5000] [--dir DIR]
#   DIR (default /var/lib/hull-test-registry) holds config.yml, data/ (the blobs),
#   registry.pid and registry.log. start and stop are idempotent; status exits 0 only when
#   the registry answers on /v2/.
set -euo pipefail

port=5000
dir=/var/lib/hull-test-registry
cmd=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
    case $1 in
        --port) port=${2:?--port needs a number}; shift 2 ;;
        --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
        *) echo "registry.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case $port in '' | *[!0-9]*) echo "registry.sh: bad port: $port" >&2; exit 2 ;; esac

pidfile=$dir/registry.pid
url=http://127.0.0.1:$port/v2/

log() { echo "registry.sh: $*" >&2; }

# True while process $1 exists and is not a zombie (a child that died but is not reaped yet).
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }

# The pid from the pid file if that process is still a docker-registry (pids get reused).
running_pid() {
    local pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "docker-registry serve $dir/config.yml" || return 1
    echo "$pid"
}

answers() { curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; }

start() {
    command -v docker-registry >/dev/null || { log "docker-registry is not installed (scripts/deps.sh)"; exit 1; }
    if pid=$(running_pid); then
        if answers; then log "already running (pid $pid) on 127.0.0.1:$port"; return 0; fi
        log "pid $pid is running but $url does not answer; see $dir/registry.log"
        exit 1
    fi
    if answers; then
        log "something else already answers on $url (not started from $dir)"
        exit 1
    fi
    mkdir -p "$dir/data"
    # http.addr binds loopback only: the registry accepts pushes without authentication.
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    # setsid: the registry outlives this script and its terminal's signals.
    setsid docker-registry serve "$dir/config.yml" </dev/null >>"$dir/registry.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 100); do
        if answers; then log "started (pid $(cat "$pidfile")) on 127.0.0.1:$port, data in $dir/data"; return 0; fi
        if ! alive "$(cat "$pidfile")"; then
            log "docker-registry exited during start; last lines of $dir/registry.log:"
            tail -n 20 "$dir/registry.log" >&2
            rm -f "$pidfile"
            exit 1
        fi
        sleep 0.1
    done
    log "docker-registry did not answer on $url within 10 s; see $dir/registry.log"
    exit 1
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$pidfile"
        log "not running"
        return 0
    fi
    kill "$pid"
    for _ in $(seq 50); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    [ -d "/proc/$pid" ] && kill -9 "$pid"
    rm -f "$pidfile"
    log "stopped (pid $pid)"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    status)
        if pid=$(running_pid) && answers; then
            echo "running: pid $pid, 127.0.0.1:$port, data $dir/data"
        else
            echo "not running"
            exit 1
        fi
        ;;
    *) echo "usage: registry.sh start|stop|status [--port 5000] [--dir DIR]" >&2; exit 2 ;;
esac
