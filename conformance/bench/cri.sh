#!/usr/bin/env bash
# CRI benchmark: hull-cri side by side with Debian's containerd (CRI plugin, runc), same
# images from the same local registry, equivalent CNI configs (bridge, host-local, portmap,
# loopback), driven by the same client.
#
#   conformance/bench/cri.sh [--runs N] [--pods N] [--out FILE]
#
# Measures, alternating the two runtimes run by run so that drift hits both alike:
#   - pod start: RunPodSandbox, CreateContainer, StartContainer of a busybox `sleep`, image
#     present (wall, median of N); then StopPodSandbox + RemovePodSandbox (median);
#   - --pods pods started in parallel (total wall);
#   - the daemon's RSS idle and with those pods running, and the RSS of the per-pod
#     processes (hull-cri: monitors and PID-namespace holders; containerd: its shims);
#   - pull of docker.io/hull/bench-big:1 (four layers, about 400 MB unpacked) from the local
#     registry, image removed, content collected and dirty data written back before each
#     pull (median of 3).
# Pod start, stop and the parallel start are timed by cri-shim/examples/pod_start.rs over
# one gRPC connection, as kubelet holds one: a crictl process per call would add its own
# start-up (about 20 ms here, printed below) three times to both runtimes' figures. crictl
# pulls and cleans up. Writes a markdown table (default conformance/bench/results/cri.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=10
pods=20
out=$here/results/cri.md
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=${2:?}; shift 2 ;;
        --pods) pods=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        *) echo "usage: $0 [--runs N] [--pods N] [--out FILE]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
cd "$repo"
crictl_bin=conformance/work/bin/crictl
hull_sock=/run/hull/bench.sock
ctrd_dir=/tmp/hull-bench-containerd
ctrd_sock=$ctrd_dir/containerd.sock
work=$(mktemp -d /tmp/hull-bench-cri.XXXXXX)
image=registry.k8s.io/e2e-test-images/busybox:1.29-2
big=docker.io/hull/bench-big:1

cleanup() {
    local rc=$?
    for s in "$hull_sock" "$ctrd_sock"; do
        [ -S "$s" ] || continue
        for p in $(cri "$s" pods -q 2>/dev/null); do
            cri "$s" stopp "$p" >/dev/null 2>&1 || true
            cri "$s" rmp "$p" >/dev/null 2>&1 || true
        done
    done
    conformance/hull-cri.sh stop --root /var/lib/hull-cri-bench --socket "$hull_sock" >/dev/null 2>&1 || true
    conformance/containerd-cri.sh stop --dir "$ctrd_dir" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT

cri() { local s=$1; shift; "$crictl_bin" --runtime-endpoint "unix://$s" --image-endpoint "unix://$s" --timeout 120s "$@"; }
now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
rss_kib() { local t=0 p; for p in "$@"; do t=$((t + $(ps -o rss= -p "$p" 2>/dev/null || echo 0))); done; echo $t; }

pod_start=target/release/examples/pod_start
remove_pod() { cri "$1" stopp "$2" >/dev/null && cri "$1" rmp "$2" >/dev/null; }

echo "bench: building release binaries, registry, images" >&2
scripts/build-release.sh >/dev/null
cargo build --release -q -p hull-cri --example pod_start
conformance/tools.sh crictl >/dev/null
conformance/registry.sh start >/dev/null
conformance/images.sh --big >/dev/null
conformance/cni-setup.sh >/dev/null
conformance/hull-cri.sh start --bin target/dist --root /var/lib/hull-cri-bench --socket "$hull_sock" >/dev/null
conformance/containerd-cri.sh start --dir "$ctrd_dir" >/dev/null
hull_pid=$(conformance/hull-cri.sh status --root /var/lib/hull-cri-bench --socket "$hull_sock" | awk '{print $3}')
ctrd_pid=$(cat "$ctrd_dir/containerd.pid")
for s in "$hull_sock" "$ctrd_sock"; do cri "$s" pull "$image" >/dev/null; done
sleep 2
idle_hull=$(rss_kib "$hull_pid")
idle_ctrd=$(rss_kib "$ctrd_pid")

declare -A start stop
for r in $(seq "$runs"); do
    for rt in hull ctrd; do
        sock=$hull_sock; [ $rt = ctrd ] && sock=$ctrd_sock
        times=$("$pod_start" "$sock" "$image" "bench-$rt-s$r" 1)
        read -r t_start t_stop <<<"$times"
        start[$rt]+="$t_start "
        stop[$rt]+="$t_stop "
    done
done

declare -A par rss_daemon rss_pods
for rt in hull ctrd; do
    sock=$hull_sock; [ $rt = ctrd ] && sock=$ctrd_sock
    "$pod_start" "$sock" "$image" "bench-$rt-p" "$pods" --parallel >"$work/par-$rt"
    par[$rt]=$(head -1 "$work/par-$rt")
    sleep 1
    if [ $rt = hull ]; then
        rss_daemon[$rt]=$(rss_kib "$hull_pid")
        rss_pods[$rt]=$(rss_kib $(pgrep -x hull-cri-monito) $(pgrep -x hull-pod-init))
    else
        rss_daemon[$rt]=$(rss_kib "$ctrd_pid")
        rss_pods[$rt]=$(rss_kib $(pgrep -f containerd-shim-runc-v2))
    fi
    for p in $(tail -n +2 "$work/par-$rt"); do remove_pod "$sock" "$p"; done
done

declare -A pull
for r in 1 2 3; do
    for rt in hull ctrd; do
        sock=$hull_sock; [ $rt = ctrd ] && sock=$ctrd_sock
        cri "$sock" rmi "$big" >/dev/null 2>&1 || true
        if [ $rt = ctrd ]; then
            # containerd keeps blobs until its garbage collector runs: force it.
            ctr --address "$ctrd_sock" -n k8s.io content prune references >/dev/null 2>&1 || true
        fi
        # hull-cri makes each unpacked layer durable with syncfs, which also writes back
        # whatever else is dirty on the filesystem, such as the other runtime's previous
        # pull: start every pull from clean page cache so neither pays for the other.
        sync
        t0=$(now_ns); cri "$sock" pull "$big" >/dev/null; t1=$(now_ns)
        pull[$rt]+="$(((t1 - t0) / 1000000)) "
    done
done

t0=$(now_ns); for _ in 1 2 3 4 5; do "$crictl_bin" --version >/dev/null; done
crictl_ms=$((($(now_ns) - t0) / 5000000))

m() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
{
    echo "# CRI benchmark: hull-cri and containerd"
    echo
    echo "Generated by \`conformance/bench/cri.sh --runs $runs --pods $pods\` on $(date -u +%Y-%m-%d)."
    echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,"
    echo "Linux $(uname -r), cgroup v1 (hybrid). containerd $(containerd --version | awk '{print $3}') with runc $(runc --version | awk 'NR==1 {print $3}');"
    echo "hull-cri $(git rev-parse --short HEAD) (release build). Pod start and stop are timed over one gRPC connection"
    echo "(cri-shim/examples/pod_start.rs); crictl, which is not in those figures, starts in about $crictl_ms ms per call."
    echo
    echo "| measure | hull-cri | containerd | ratio |"
    echo "|---|---|---|---|"
    row "pod + container start, ms (median of $runs)" "$(m "${start[hull]}")" "$(m "${start[ctrd]}")"
    row "stop + remove pod, ms (median of $runs)" "$(m "${stop[hull]}")" "$(m "${stop[ctrd]}")"
    row "$pods pods in parallel, ms" "${par[hull]}" "${par[ctrd]}"
    row "pull of bench-big (~400 MB), ms (median of 3)" "$(m "${pull[hull]}")" "$(m "${pull[ctrd]}")"
    row "daemon RSS idle, KiB" "$idle_hull" "$idle_ctrd"
    row "daemon RSS with $pods pods, KiB" "${rss_daemon[hull]}" "${rss_daemon[ctrd]}"
    row "per-pod processes' RSS with $pods pods, KiB" "${rss_pods[hull]}" "${rss_pods[ctrd]}"
} | tee "$out"
