#!/bin/sh
# Assemble the hull-sandbox stage-1 OCI bundle: the busybox bundle
# (bundles/busybox/build.sh) plus the stage-1 workload programs.
#
# usage: build.sh <outdir> [args...]
#
#   <outdir>/rootfs/opt/script.sh     busybox sh workload (script.sh)
#   <outdir>/rootfs/opt/threads       static Rust workload (threads.rs)
#   <outdir>/rootfs/opt/procs         static C workload (procs.c, glibc)
#   <outdir>/rootfs/opt/bench/*       static C micro-benchmarks (bench/*.c)
#   <outdir>/config.json              as bundles/busybox/build.sh writes it,
#                                     process.args = [args...] (default
#                                     /opt/script.sh)
#
# Idempotent: everything is compiled into a scratch directory first, and only
# then is <outdir> replaced (bundles/busybox/build.sh removes it first).
# Needs: busybox-static, jq, gcc with Debian's libc6-dev (static glibc), rustc
# with the x86_64-unknown-linux-gnu target.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

die() {
	echo "build.sh: $*" >&2
	exit 1
}

[ $# -ge 1 ] || {
	echo "usage: $0 <outdir> [args...]" >&2
	exit 2
}
outdir=$1
shift
[ $# -gt 0 ] || set -- /opt/script.sh

command -v gcc >/dev/null 2>&1 || die "gcc not found: install gcc and libc6-dev"
command -v rustc >/dev/null 2>&1 || die "rustc not found"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/hull-sandbox-bundle.XXXXXX")
trap 'rm -rf -- "$scratch"' EXIT

mkdir -p "$scratch/opt/bench"
cp "$here/script.sh" "$scratch/opt/script.sh"
chmod 0755 "$scratch/opt/script.sh"
gcc -static -O2 -Wall -Wextra -Werror -o "$scratch/opt/procs" "$here/procs.c" ||
	die "compiling procs.c failed (static glibc comes from libc6-dev)"
for src in "$here"/bench/*.c; do
	name=$(basename "$src" .c)
	gcc -static -O2 -Wall -Wextra -Werror -o "$scratch/opt/bench/$name" "$src" ||
		die "compiling $src failed"
done
rustc -O -C target-feature=+crt-static --target x86_64-unknown-linux-gnu \
	-o "$scratch/opt/threads" "$here/threads.rs" ||
	die "compiling threads.rs failed"
rm -f "$scratch"/opt/*.d "$scratch"/opt/*.o

"$here/../busybox/build.sh" "$outdir" "$@"
cp -R "$scratch/opt" "$outdir/rootfs/opt"
echo "sandbox bundle ready: $outdir" >&2
