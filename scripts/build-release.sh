#!/usr/bin/env bash
# Release build of what hull ships, assembled in target/dist/:
#   hull, hull-cri-monitor, hull-cri-pinns, hull-sandbox  static-pie (glibc, +crt-static)
#   hull-cri                                              dynamic (glibc's resolver uses NSS)
#
# Why static: hull runs twice per container (the sealed re-exec, runtime/src/sys/exe.rs),
# and hull-cri starts a monitor per container. Each dynamic start maps libc, libm and
# libgcc_s and binds every imported symbol (BIND_NOW); measured with perf stat, that was
# about 1.5 ms of CPU in a 10 ms `hull run` (conformance/bench/). runc's release
# binaries are static for the same reasons. Static-pie keeps ASLR and full RELRO.
#
# Why hull's functions are ordered: the container life cycle calls about 870 of hull's
# 5,400 functions, spread over 3.5 MB of text, and the kernel maps 64 KiB of file pages
# around each fault, so nearly all of the text became resident (2.7 MB of a 3.9 MB peak
# RSS per `run`). Run as root, this script traces `hull run`, create/start/state/exec/
# kill/delete on the busybox bundle with tools/text-order, and links hull again with the
# functions called placed first, in first-call order (lld's --symbol-ordering-file):
# resident text 0.9 MB, peak RSS 1.96 MB (crun 3.4 MB). The order is regenerated
# whenever the called set changes; a build that is not root keeps the previous order,
# or none, and says so.
#
# RELR packs the relative relocations a static-pie applies to itself at start-up
# (.rela.dyn: 300 KB, all read by every run, down to 4 KB).
#
# cargo applies +crt-static to proc-macros too unless the target is named, so these are
# built for an explicit --target, in target/x86_64-unknown-linux-gnu/release/.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
[ "$(uname -m)" = x86_64 ] || triple="$(uname -m)-unknown-linux-gnu"
gcc_ld="$(rustc --print sysroot)/lib/rustlib/$triple/bin/gcc-ld"
[ -x "$gcc_ld/ld.lld" ] || { echo "build-release: $gcc_ld/ld.lld missing (the Rust toolchain's lld)" >&2; exit 1; }
static_flags="-C target-feature=+crt-static -C link-arg=-fuse-ld=lld -C link-arg=-B$gcc_ld -C link-arg=-Wl,-z,pack-relative-relocs"

cargo build --release -q -p hull-cri --bin hull-cri
cargo build --release -q -p hull-text-order --bin text-order
RUSTFLAGS="$static_flags" cargo build --release -q --target "$triple" \
    -p hull-sandbox -p hull-cri --bin hull-sandbox --bin hull-cri-monitor --bin hull-cri-pinns

# Two order files take turns: the link argument names the one in use, so a new order
# changes the argument and cargo links hull again (without recompiling anything else).
orders=target/text-order
mkdir -p "$orders"
[ -f "$orders/a" ] || : >"$orders/a"
current=$(cat "$orders/current" 2>/dev/null || echo a)
link_hull() {
    RUSTFLAGS="$static_flags" cargo rustc --release -q --target "$triple" -p hull --bin hull -- \
        -C link-arg=-Wl,--symbol-ordering-file="$PWD/$orders/$1" -C link-arg=-Wl,--no-warn-symbol-ordering
}
link_hull "$current"
hull_bin="target/$triple/release/hull"

train() {
    work=$(mktemp -d /tmp/hull-train.XXXXXX)
    # A failing step stops the build; the container and the directory go with it.
    trap '"$hull_bin" --root "$work/state" delete -f train-life >/dev/null 2>&1; rm -rf "$work"' EXIT
    bundles/busybox/build.sh "$work/run" /bin/true >/dev/null 2>&1
    bundles/busybox/build.sh "$work/life" /bin/sleep 30 >/dev/null 2>&1
    nm --defined-only --print-size "$hull_bin" >"$work/syms"
    local h="$PWD/$hull_bin --root $work/state"
    target/release/text-order --binary "$hull_bin" --symbols "$work/syms" -- /bin/sh -ec "
        $h run -b $work/run train-run >/dev/null
        $h create -b $work/life train-life
        $h start train-life
        $h state train-life >/dev/null
        $h exec train-life /bin/true
        $h kill train-life KILL
        $h delete -f train-life" >"$orders/new"
}
if [ "$(id -u)" -eq 0 ]; then
    train
    if cmp -s <(sort "$orders/new") <(sort "$orders/$current"); then
        rm "$orders/new"
    else
        next=$([ "$current" = a ] && echo b || echo a)
        mv "$orders/new" "$orders/$next"
        echo "$next" >"$orders/current"
        link_hull "$next"
    fi
else
    echo "build-release: not root, so hull's functions are not traced; linked with $(wc -l <"$orders/$current") ordered" >&2
fi

mkdir -p target/dist
for b in hull hull-sandbox hull-cri-monitor hull-cri-pinns; do
    install -m 0755 "target/$triple/release/$b" target/dist/
done
install -m 0755 target/release/hull-cri target/dist/
echo target/dist
