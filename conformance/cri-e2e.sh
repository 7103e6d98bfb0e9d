#!/usr/bin/env bash
# The CRI end-to-end lane of scripts/test.sh: a local registry with the test images, the CNI
# config, hull-cri from target/debug, then the crictl end-to-end test (with recovery after
# kill -9), the headline test: a stock kubelet (standalone) running a static pod, and a pod
# on the RuntimeClass handler `sandbox` (hull-sandbox).
# Builds crictl and kubelet from their Go modules first (conformance/tools.sh; cached).
# Leaves nothing running: pods removed, kubelet, hull-cri and the registry stopped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
socket=/run/hull/cri.sock
endpoint=unix://$socket
crictl="$here/work/bin/crictl --runtime-endpoint $endpoint --image-endpoint $endpoint"

cleanup() {
    local rc=$?
    conformance/kubelet/run.sh stop --endpoint "$endpoint" >/dev/null 2>&1 || true
    # Whatever a failed step left: every pod of this daemon, then the daemon.
    if [ -S "$socket" ]; then
        for p in $($crictl pods -q 2>/dev/null); do
            $crictl stopp "$p" >/dev/null 2>&1 || true
            $crictl rmp "$p" >/dev/null 2>&1 || true
        done
    fi
    conformance/hull-cri.sh stop || true
    conformance/registry.sh stop >/dev/null 2>&1 || true
    rm -rf /var/log/pods/default_hull-headline-* 2>/dev/null || true
    exit $rc
}
trap cleanup EXIT

conformance/tools.sh crictl kubelet
# A kubelet left from an earlier run would fight this one over the static pod.
conformance/kubelet/run.sh stop --endpoint "$endpoint"
conformance/registry.sh start
conformance/images.sh >/dev/null
conformance/cni-setup.sh
cargo build -p hull -p hull-cri
conformance/hull-cri.sh start
echo "== crictl end-to-end (with restart recovery)"
conformance/crictl-e2e.sh --endpoint "$endpoint" --restart-cmd "$(conformance/hull-cri.sh start-cmd)"
echo "== headline: a stock kubelet runs a static pod on hull-cri"
rm -rf /var/log/pods/default_hull-headline-*
conformance/kubelet/run.sh start --endpoint "$endpoint"
conformance/kubelet/check.sh
conformance/kubelet/run.sh stop --endpoint "$endpoint"
echo "== RuntimeClass handler 'sandbox': a pod on hull-sandbox's Sentry"
cargo build -p hull-sandbox
conformance/sandbox-cri.sh
echo "cri-e2e: all passed"
