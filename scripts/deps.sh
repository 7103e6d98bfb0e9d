#!/usr/bin/env bash
# Installs what building and testing hull needs on a fresh Debian 12 machine of this kind.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(busybox-static runc jq hyperfine containerd podman golang-github-containers-common crun file)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "deps: cargo (Rust) is required" >&2; exit 1; }
