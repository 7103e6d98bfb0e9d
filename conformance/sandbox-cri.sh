#!/usr/bin/env bash
# hull-cri's RuntimeClass handler "sandbox" runs pods on hull-sandbox: starts a hull-cri of
# its own (own root, run dir and socket, beside any other), runs a pod with
# `crictl runp --runtime sandbox`, and checks from the container's output that it ran on the
# Sentry (uname shows the sandbox's kernel identity), with its exit code and the pod's
# hostname. Removes everything it made. Needs the local registry (registry.sh, images.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-$here/../target/debug}
crictl=${CRICTL:-$here/work/bin/crictl}
work=$(mktemp -d /tmp/hull-sandbox-cri.XXXXXX)
sock=/run/hull-sandbox-cri/cri.sock
args=(--bin "$bin" --root /var/lib/hull-sandbox-cri --run /run/hull-sandbox-cri-run --socket "$sock")
c() { "$crictl" --runtime-endpoint "unix://$sock" "$@" 2>/dev/null; }
cleanup() {
    local p
    for p in $(c pods -q || true); do c rmp -f "$p" >/dev/null || true; done
    "$here/hull-cri.sh" stop "${args[@]}" >/dev/null 2>&1 || true
    rm -rf "$work" /var/lib/hull-sandbox-cri /run/hull-sandbox-cri-run /run/hull-sandbox-cri
}
trap cleanup EXIT
fail() { echo "sandbox-cri: FAIL: $*" >&2; exit 1; }

[ -x "$bin/hull-sandbox" ] || fail "$bin/hull-sandbox is missing (cargo build -p hull-sandbox)"
"$here/hull-cri.sh" start "${args[@]}" >/dev/null
c info | grep -q '"sandbox"' || fail "hull-cri does not list the sandbox handler"
cat > "$work/pod.json" <<JSON
{"metadata":{"name":"sbx","namespace":"hull-sandbox","uid":"hull-sandbox-1","attempt":0},
 "hostname":"sbx-pod","log_directory":"$work/logs","linux":{}}
JSON
cat > "$work/ctr.json" <<'JSON'
{"metadata":{"name":"uname"},"image":{"image":"registry.k8s.io/e2e-test-images/busybox:1.29-2"},
 "command":["sh","-c","uname -s -r -v; echo \"host=$(hostname) pid=$$\"; exit 3"],
 "log_path":"uname.log","linux":{}}
JSON
c pull registry.k8s.io/e2e-test-images/busybox:1.29-2 >/dev/null || fail "pull"
pod=$(c runp --runtime sandbox "$work/pod.json") || fail "runp --runtime sandbox"
ctr=$(c create "$pod" "$work/ctr.json" "$work/pod.json") || fail "create"
c start "$ctr" >/dev/null || fail "start"
for _ in $(seq 100); do
    c inspect "$ctr" | grep -q CONTAINER_EXITED && break
    sleep 0.1
done
out=$(c logs "$ctr")
echo "$out" | sed 's/^/sandbox-cri: container says: /'
echo "$out" | grep -q "hull-sandbox" || fail "uname does not show the sandbox kernel"
echo "$out" | grep -q "host=sbx-pod pid=1" || fail "hostname or pid namespace wrong"
code=$(c inspect "$ctr" | sed -n 's/.*"exitCode": \([0-9]*\).*/\1/p' | head -1)
[ "$code" = 3 ] || fail "exit code $code, want 3"
c rmp -f "$pod" >/dev/null || fail "rmp"
[ -z "$(ls /run/hull-sandbox-cri-run/runtime/sandbox 2>/dev/null)" ] || fail "sandbox state left behind"
echo "sandbox-cri: ok (pod on the sandbox handler ran on the Sentry)"
