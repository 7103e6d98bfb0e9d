#!/usr/bin/env bash
# Fails if tests left containers' traces on the host: mounts under the state roots,
# cgroups named after hull or its tests, or network namespaces.
set -euo pipefail
status=0
mounts=$(grep -cE ' /run/hull| /var/lib/hull' /proc/self/mountinfo || true)
[ "$mounts" -eq 0 ] || { echo "leftover: $mounts mounts under /run/hull or /var/lib/hull"; status=1; }
cgroups=$(find /sys/fs/cgroup -maxdepth 3 -type d -iname '*hull*' 2>/dev/null)
[ -z "$cgroups" ] || { echo "leftover cgroups:"; echo "$cgroups"; status=1; }
netns=$(ip netns list 2>/dev/null | wc -l)
[ "$netns" -eq 0 ] || { echo "leftover: $netns network namespaces"; status=1; }
exit $status
