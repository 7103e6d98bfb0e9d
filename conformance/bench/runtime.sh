#!/usr/bin/env bash
# Runtime benchmark: hull side by side with crun and runc (and youki if installed) on the
# same busybox bundle whose process is /bin/true.
#
#   conformance/bench/runtime.sh [--runs N] [--out FILE]
#
# Measures, per runtime, interleaved run by run so that drift hits all alike:
#   - `run` to completion: wall, CPU (user+sys) and peak RSS from GNU time, medians;
#   - the create, start and delete phases (wall medians);
#   - 100 containers in sequence and 10 in parallel (total wall);
#   - the binary's size.
# It reports ratios hull/peer and writes a markdown table (default
# conformance/bench/results/runtime.md). Everything runs inside one private mount
# namespace without the controller-less cgroup2 mount, which crun 1.8 needs on a hybrid
# host; hull and runc see the same layout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=100
out=$here/results/runtime.md
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --inner) shift; exec "$here/runtime-inner.sh" "$@" ;;
    *) echo "usage: $0 [--runs N] [--out FILE]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
missing=()
for p in crun runc hyperfine time busybox-static jq; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
"$repo/scripts/build-release.sh" >/dev/null
mkdir -p "$(dirname "$out")"
exec unshare --mount --propagation private sh -c \
    'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec "$0" "$@"' \
    "$here/runtime-inner.sh" "$repo" "$runs" "$out"
