#!/usr/bin/env bash
# Drop-in check: Debian's podman with `--runtime` pointing at hull runs a container from a
# local OCI archive, and `podman exec` works. Podman's storage and state are private to
# this run (--root/--runroot), so nothing of the host's podman is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
hull=${HULL:-$PWD/target/release/hull}
[ -x "$hull" ] || cargo build --release -p hull
command -v podman >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null; }

work=$(mktemp -d /tmp/hull-podman.XXXXXX)
pm=(podman --root "$work/root" --runroot "$work/runroot" --runtime "$hull"
    --cgroup-manager cgroupfs --events-backend none --storage-driver overlay)
cleanup() {
    "${pm[@]}" rm -f -t 0 p1 >/dev/null 2>&1 || true
    "${pm[@]}" system reset -f >/dev/null 2>&1 || true
    umount -R "$work/root" 2>/dev/null || true
    umount -R "$work/runroot" 2>/dev/null || true
    rm -rf "$work"
    # podman's parent cgroup for its containers (cgroupfs manager).
    rmdir /sys/fs/cgroup/*/libpod_parent 2>/dev/null || true
}
trap cleanup EXIT

bundles/busybox/oci-image.sh "$work/image.tar" localhost/hull-busybox:latest
"${pm[@]}" load -q -i "$work/image.tar" >/dev/null
img=localhost/hull-busybox:latest
# podman asks for RLIMIT_NOFILE 1048576 and an RLIMIT_NPROC above the one it runs the
# runtime with; raising a hard limit needs CAP_SYS_RESOURCE, which root lacks on this
# machine (runc fails the same way). Ask for limits that only lower.
sec=(--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
# seccomp: podman applies containers-common's profile by default.
if ! "$hull" features | jq -e '.linux.seccomp.enabled' >/dev/null; then
    sec+=(--security-opt seccomp=unconfined)
fi

echo "podman: run with --runtime $hull ${sec[*]}"
out=$("${pm[@]}" run --rm "${sec[@]}" --network none "$img" sh -c 'echo ran-under-hull; id -u')
echo "$out"
grep -q ran-under-hull <<<"$out"

"${pm[@]}" run -d --name p1 "${sec[@]}" --network none "$img" sleep 300 >/dev/null
out=$("${pm[@]}" exec p1 sh -c 'echo exec-ok; cat /proc/1/cmdline | tr "\0" " "')
echo "$out"
grep -q exec-ok <<<"$out"
"${pm[@]}" ps
"${pm[@]}" rm -f -t 0 p1 >/dev/null
echo "podman: PASS"
