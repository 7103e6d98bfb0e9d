#!/usr/bin/env bash
# Drop-in check: Debian's containerd, with hull as the runc binary of the runc v2 shim,
# runs a container from a local OCI archive (`ctr run`) and execs into it (`ctr task exec`).
# A private containerd (own socket, root and state dirs) is started and stopped here.
set -euo pipefail
cd "$(dirname "$0")/.."
hull=${HULL:-$PWD/target/release/hull}
[ -x "$hull" ] || cargo build --release -p hull
command -v containerd >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null; }

work=$(mktemp -d /tmp/hull-containerd.XXXXXX)
sock=$work/containerd.sock
ctr=(ctr --address "$sock" --namespace hulltest)
cleanup() {
    "${ctr[@]}" task kill -s KILL c1 >/dev/null 2>&1 || true
    "${ctr[@]}" task delete c1 >/dev/null 2>&1 || true
    "${ctr[@]}" container delete c1 >/dev/null 2>&1 || true
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    umount -R "$work/state" 2>/dev/null || true
    umount -R "$work/root" 2>/dev/null || true
    rm -rf "$work"
    # ctr's cgroupsPath is /<namespace>/<id>: the runtime removes <id>, as runc does,
    # and the namespace directory is ours to remove.
    rmdir /sys/fs/cgroup/*/hulltest 2>/dev/null || true
}
trap cleanup EXIT

cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_apparmor = true
[plugins."io.containerd.runtime.v1.linux"]
  runtime = "$hull"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "$hull"
TOML
containerd --config "$work/config.toml" --log-level warn >"$work/containerd.log" 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/containerd.log"; echo "containerd did not start" >&2; exit 1; }

bundles/busybox/oci-image.sh "$work/image.tar" docker.io/library/hull-busybox:latest
"${ctr[@]}" image import "$work/image.tar" >/dev/null
img=docker.io/library/hull-busybox:latest

echo "containerd: ctr run with --runc-binary $hull"
out=$("${ctr[@]}" run --rm --runc-binary "$hull" "$img" c0 sh -c 'echo ran-under-hull; cat /proc/1/cgroup | head -1')
echo "$out"
grep -q ran-under-hull <<<"$out"

"${ctr[@]}" run -d --runc-binary "$hull" "$img" c1 sleep 300 >/dev/null
out=$("${ctr[@]}" task exec --exec-id e1 c1 sh -c 'echo exec-ok; ps | wc -l')
echo "$out"
grep -q exec-ok <<<"$out"
"${ctr[@]}" task ls
# The shim keeps runtime state under /run/containerd/runc/<namespace>: hull must be able
# to read it, which proves hull (not runc) created the container.
"$hull" --root /run/containerd/runc/hulltest state c1 | grep -q '"status": "running"'
echo "containerd: c1 is a hull container"
"${ctr[@]}" task kill -s KILL c1
for _ in $(seq 50); do "${ctr[@]}" task ls | grep -q 'c1.*STOPPED' && break; sleep 0.1; done
"${ctr[@]}" task delete c1 >/dev/null
"${ctr[@]}" container delete c1
echo "containerd: PASS"
