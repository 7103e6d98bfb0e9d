#!/usr/bin/env bash
# Installs dependencies, builds the workspace, assembles the busybox bundle and runs it
# with hull. Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (hull creates namespaces and cgroups)" >&2; exit 1; }

scripts/deps.sh
scripts/build-release.sh >/dev/null  # what hull ships, in target/dist (scripts/build-release.sh says why)
bundle=bundles/out/busybox
bundles/busybox/build.sh "$bundle" >/dev/null
echo "demo: hull run --bundle $bundle demo-$$"
exec target/dist/hull run --bundle "$bundle" "demo-$$"
