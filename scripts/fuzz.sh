#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 30 s each). Needs the nightly
# toolchain and cargo-fuzz, which it installs when missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in $(cargo +nightly fuzz list); do
    echo "fuzz: $target for ${secs}s"
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -max_len=65536 2>&1 | tail -n 3
done
