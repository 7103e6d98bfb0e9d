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
# cargo applies +crt-static to proc-macros too unless the target is named, so these are
# built for an explicit --target, in target/x86_64-unknown-linux-gnu/release/.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
[ "$(uname -m)" = x86_64 ] || triple="$(uname -m)-unknown-linux-gnu"
cargo build --release -q -p hull-cri --bin hull-cri
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q --target "$triple" \
    -p hull -p hull-sandbox -p hull-cri --bin hull --bin hull-sandbox \
    --bin hull-cri-monitor --bin hull-cri-pinns
mkdir -p target/dist
for b in hull hull-sandbox hull-cri-monitor hull-cri-pinns; do
    install -m 0755 "target/$triple/release/$b" target/dist/
done
install -m 0755 target/release/hull-cri target/dist/
echo target/dist
