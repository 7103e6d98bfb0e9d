#!/bin/bash
# hull-cri inside the VM (run.sh's `cri` test): cgroup v2 and AppArmor, which this host's
# kernel cannot show.
#
# usage: cri-test.sh BIN CRICTL CRITEST
#
# BIN holds hull, hull-cri, hull-cri-monitor and hull-cri-pinns. The VM's / is the host's,
# read-only, so everything written goes to tmpfs:
#   - the local registry (docker-registry) serves the host's registry storage through an
#     overlay with a tmpfs upper layer (images.sh filled it on the host);
#   - hull-cri's root and run directories, the CNI config and host-local's leases; the CNI
#     config has no ipMasq and no portmap (the VM has no iptables), only bridge, host-local
#     and loopback (bridge and veth are in the initramfs).
# Then, each step printed as `ok`/`not ok` and any failure failing the test:
#   1. hull-cri loaded hull-default (its RuntimeDefault AppArmor profile) at start-up;
#   2. a pod and a container start on cgroup v2; the container's cgroup is a v2 directory
#      under the pod's; `crictl stats` reads its memory and CPU from it; stop and removal
#      leave no cgroup;
#   3. critest's AppArmor tests (RuntimeDefault, Localhost, an unloaded profile, and the
#      deprecated field's forms) pass.
set -u
bin=$1 crictl=$2 critest=$3
work=$(mktemp -d /tmp/cri-test.XXXXXX)
reg_src=/var/lib/hull-test-registry
sock=/run/hull/vm-cri.sock
ep=unix://$sock
failed=0
step() { # step NAME CMD...: runs CMD, prints ok/not ok NAME
	local name=$1
	shift
	if "$@"; then echo "ok - $name"; else echo "not ok - $name"; failed=1; fi
}
die() { echo "cri-test.sh: $*"; exit 1; }

[ -f "$reg_src/config.yml" ] || die "no registry at $reg_src (conformance/registry.sh start and images.sh on the host)"
for b in hull hull-cri hull-cri-monitor hull-cri-pinns; do [ -x "$bin/$b" ] || die "no $bin/$b"; done
[ -x "$crictl" ] && [ -x "$critest" ] || die "no crictl or critest (conformance/tools.sh crictl critest)"

# --- registry: the host's storage, writable through an overlay ---------------------------
mkdir -p "$work/reg/up" "$work/reg/wk" "$work/reg/data"
mount -t overlay -o "lowerdir=$reg_src/data,upperdir=$work/reg/up,workdir=$work/reg/wk" \
	overlay "$work/reg/data" || die "cannot overlay $reg_src/data"
sed "s|$reg_src/data|$work/reg/data|" "$reg_src/config.yml" >"$work/reg/config.yml"
docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
reg_pid=$!

# --- CNI and hull-cri ----------------------------------------------------------------------
mkdir -p "$work/net.d" "$work/cni-data" /run/hull
cat >"$work/net.d/10-vm.conflist" <<EOF
{ "cniVersion": "1.0.0", "name": "hull-vm", "plugins": [
  { "type": "bridge", "bridge": "hull0", "isGateway": true,
    "ipam": { "type": "host-local", "dataDir": "$work/cni-data",
              "ranges": [[{ "subnet": "10.86.0.0/16" }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
  { "type": "loopback" } ] }
EOF
cat >"$work/cri.toml" <<EOF
[cni]
conf_dir = "$work/net.d"
[registries."registry.k8s.io"]
mirrors = ["http://127.0.0.1:5000"]
[registries."docker.io"]
mirrors = ["http://127.0.0.1:5000"]
[registries."gcr.io"]
mirrors = ["http://127.0.0.1:5000"]
[registries."k8s.gcr.io"]
mirrors = ["http://127.0.0.1:5000"]
EOF
"$bin/hull-cri" --listen "$sock" --root "$work/root" --run /run/hull-cri-vm \
	--config "$work/cri.toml" --runtime "$bin/hull" >"$work/hull-cri.log" 2>&1 </dev/null &
cri_pid=$!
cleanup() {
	kill "$cri_pid" "$reg_pid" 2>/dev/null
	wait "$cri_pid" "$reg_pid" 2>/dev/null
	apparmor_parser --remove --skip-cache /dev/stdin <<<"profile hull-default {}" >/dev/null 2>&1
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/hull-cri.log"; die "hull-cri did not start"; }
for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null && break; sleep 0.1; done
printf 'runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 60\n' "$ep" "$ep" >"$work/crictl.yaml"
cri() { "$crictl" --config "$work/crictl.yaml" "$@"; }

# --- 1. the default AppArmor profile -------------------------------------------------------
loaded() { grep -q '^hull-default (enforce)$' /sys/kernel/security/apparmor/profiles; }
step "hull-cri loaded its AppArmor profile hull-default" loaded

# --- 2. a pod on cgroup v2 -----------------------------------------------------------------
image=registry.k8s.io/e2e-test-images/busybox:1.29-2
cat >"$work/pod.json" <<EOF
{ "metadata": { "name": "v2-pod", "namespace": "vm", "uid": "v2-pod-uid" },
  "log_directory": "$work/logs" }
EOF
cat >"$work/ctr.json" <<EOF
{ "metadata": { "name": "worker" }, "image": { "image": "$image" },
  "command": ["/bin/sh", "-c", "head -c 8388608 /dev/zero | tail -c 1 >/dev/null; sleep 600"],
  "linux": { "resources": { "memory_limit_in_bytes": 67108864, "cpu_shares": 512 },
             "security_context": { "apparmor": { "profile_type": 0 } } },
  "log_path": "worker.log" }
EOF
pod_on_v2() {
	cri pull "$image" >/dev/null || return 1
	pod=$(cri runp "$work/pod.json") || return 1
	ctr=$(cri create "$pod" "$work/ctr.json" "$work/pod.json") || return 1
	cri start "$ctr" >/dev/null || return 1
	local pid dir
	pid=$(cri inspect "$ctr" | jq -r .info.pid)
	[ "$pid" -gt 0 ] 2>/dev/null || { echo "# no pid for container $ctr"; return 1; }
	dir=/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
	echo "# container cgroup: $dir"
	[ -f "$dir/memory.max" ] || { echo "# not a v2 cgroup with memory: $dir"; return 1; }
	[ "$(cat "$dir/memory.max")" = 67108864 ] || { echo "# memory.max $(cat "$dir/memory.max")"; return 1; }
	cgdir=$dir
	# cpu_shares 512 is cpu.weight 59 by the shares-to-weight conversion of runc 1.3.2+,
	# crun 1.23+ and libcgroups 0.7: ceil(10^((l^2 + 125 l)/612 - 7/34)), l = log2(shares).
	[ "$(cat "$dir/cpu.weight")" = 59 ] || { echo "# cpu.weight $(cat "$dir/cpu.weight")"; return 1; }
	[ "$(cat "/proc/$pid/attr/current")" = "hull-default (enforce)" ] ||
		{ echo "# AppArmor label: $(cat "/proc/$pid/attr/current")"; return 1; }
}
step "pod and container start on cgroup v2, limits in the v2 files, RuntimeDefault AppArmor" pod_on_v2
stats_from_v2() {
	local s mem
	for _ in $(seq 30); do
		s=$(cri stats -o json --id "$ctr") || return 1
		mem=$(jq -r '.stats[0].memory.workingSetBytes.value // 0' <<<"$s")
		[ "$mem" -gt 0 ] && break
		sleep 0.5
	done
	echo "# stats: working set $mem bytes, cpu $(jq -r '.stats[0].cpu.usageCoreNanoSeconds.value' <<<"$s") ns"
	[ "$mem" -gt 0 ] && [ "$(jq -r '.stats[0].cpu.usageCoreNanoSeconds.value // 0' <<<"$s")" -gt 0 ]
}
step "crictl stats reads the container's cgroup v2 files" stats_from_v2
removal_leaves_nothing() {
	cri stopp "$pod" >/dev/null && cri rmp "$pod" >/dev/null || return 1
	[ -n "${cgdir:-}" ] || return 1
	# The container's cgroup and the pod's above it.
	for d in "$cgdir" "$(dirname "$cgdir")"; do
		[ ! -e "$d" ] || { echo "# left behind: $d"; return 1; }
	done
}
step "stop and removal leave no cgroup" removal_leaves_nothing

# --- 3. critest's AppArmor tests ---------------------------------------------------------------
critest_apparmor() {
	local out=$work/critest.log
	# critest loads its test profiles with `sudo apparmor_parser`; the VM runs as root and
	# has no sudo.
	mkdir -p "$work/bin"
	printf '#!/bin/sh\nexec "$@"\n' >"$work/bin/sudo"
	chmod +x "$work/bin/sudo"
	PATH=$work/bin:$PATH "$critest" --runtime-endpoint "$ep" --image-endpoint "$ep" \
		-ginkgo.focus 'AppArmor' -ginkgo.no-color -ginkgo.v >"$out" 2>&1
	local rc=$?
	grep -E '^(•|\[It\]|Ran [0-9]+ of|SUCCESS|FAIL)' "$out" | head -40
	local ran
	ran=$(sed -n 's/^Ran \([0-9]*\) of.*/\1/p' "$out")
	echo "# critest: exit $rc, $ran AppArmor specs run"
	[ "$rc" -eq 0 ] && [ "${ran:-0}" -ge 5 ] || { tail -n 60 "$out"; return 1; }
}
step "critest AppArmor tests" critest_apparmor

[ "$failed" -eq 0 ] || { echo "--- hull-cri log"; tail -n 40 "$work/hull-cri.log"; }
exit "$failed"
