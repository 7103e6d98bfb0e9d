#!/usr/bin/env bash
# Writes hull-cri's pod network config, /etc/cni/net.d/10-hull.conflist: bridge hull0
# (gateway, masquerade, hairpin) with host-local IPAM, portmap (hostPort mappings) and
# loopback, using Debian's containernetworking-plugins in /usr/lib/cni.
# Idempotent: running it again rewrites the same file and changes nothing else.
#
#   HULL_CNI_SUBNET   pod subnet (default 10.85.0.0/16; see below)
#   HULL_CNI_CONF_DIR config directory (default /etc/cni/net.d)
#   HULL_CNI_BRIDGE   bridge name (default hull0)
#
# Why not 10.88.0.0/16: podman claims it on this kind of host (its CNI config
# 87-podman-bridge.conflist and netavark's default network both use it), and two bridges
# routing one subnet break each other. The subnet is also checked against every route of the
# host and every subnet named by the other configs in the directory; a clash is an error.
set -euo pipefail

subnet=${HULL_CNI_SUBNET:-10.85.0.0/16}
conf_dir=${HULL_CNI_CONF_DIR:-/etc/cni/net.d}
bridge=${HULL_CNI_BRIDGE:-hull0}
plugin_dir=/usr/lib/cni
conf=$conf_dir/10-hull.conflist

die() { echo "cni-setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
for p in bridge host-local portmap loopback; do
    [ -x "$plugin_dir/$p" ] || die "missing plugin $plugin_dir/$p (install containernetworking-plugins: scripts/deps.sh)"
done
command -v ip >/dev/null || die "missing ip (install iproute2: scripts/deps.sh)"

# An IPv4 CIDR as "first last" integers.
cidr_range() {
    local ip=${1%/*} len=${1#*/} a b c d
    IFS=. read -r a b c d <<<"$ip"
    local n=$(( (a << 24) | (b << 16) | (c << 8) | d ))
    local mask=$(( len == 0 ? 0 : (0xffffffff << (32 - len)) & 0xffffffff ))
    echo $(( n & mask )) $(( (n & mask) | (~mask & 0xffffffff) ))
}
overlaps() {
    local a b c d
    read -r a b <<<"$(cidr_range "$1")"
    read -r c d <<<"$(cidr_range "$2")"
    (( a <= d && c <= b ))
}
[[ $subnet =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]] || die "HULL_CNI_SUBNET $subnet: not an IPv4 CIDR"

# Routes of the host, except the default route and our own bridge's (a rerun).
while read -r dst _ dev rest; do
    [ "$dst" = default ] && continue
    [ "$dev" = "$bridge" ] && continue
    [[ $dst == */* ]] || dst=$dst/32
    overlaps "$subnet" "$dst" && die "subnet $subnet overlaps the route to $dst (dev $dev); set HULL_CNI_SUBNET"
done < <(ip -4 route show | awk '{print $1, $2, $3}')
# Subnets claimed by the other network configs (CNI, and podman's netavark).
for f in "$conf_dir"/* /etc/containers/networks/*.json; do
    [ -f "$f" ] && [ "$f" != "$conf" ] || continue
    for other in $(grep -oE '"subnet" *: *"[0-9.]+/[0-9]+"' "$f" | grep -oE '[0-9.]+/[0-9]+'); do
        overlaps "$subnet" "$other" && die "subnet $subnet overlaps $other claimed by $f; set HULL_CNI_SUBNET"
    done
done

# The bridge plugin enables forwarding itself when it is the gateway; set it here too so
# the host is ready before the first pod. br_netfilter makes bridged pod-to-pod traffic
# (the portmap hairpin: a pod reaching its own host port) pass through iptables.
sysctl -qw net.ipv4.ip_forward=1
if [ ! -d /proc/sys/net/bridge ]; then
    modprobe br_netfilter 2>/dev/null || die "br_netfilter is neither loaded nor loadable"
fi

mkdir -p "$conf_dir"
tmp=$(mktemp "$conf_dir/.10-hull.XXXXXX")
cat >"$tmp" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "hull",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$subnet" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
JSON
chmod 0644 "$tmp"
mv "$tmp" "$conf"
echo "cni-setup: wrote $conf (bridge $bridge, subnet $subnet)"
