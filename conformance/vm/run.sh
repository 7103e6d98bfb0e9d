#!/usr/bin/env bash
# The cgroup v2 + AppArmor lane: boots Debian's generic kernel under qemu with this
# machine's / shared read-only over 9p, and runs hull's tests inside it.
#
# usage: conformance/vm/run.sh [options] [TEST...] [-- LIBTEST-ARGS...]
#
#   TEST                 [RUNTIME:]NAME, run against hull unless RUNTIME says otherwise:
#                          NAME     hull's integration test runtime/tests/NAME.rs
#                          rt/NAME  the runtime-tools validation program NAME (built by
#                                   conformance/runtime-tools.sh into conformance/work/)
#                          RUNTIME  `runc`, or the absolute path of a runtime binary
#                        sh:CMD     a shell command, run inside the VM as root
#                        cri        hull-cri on cgroup v2 with AppArmor (cri-test.sh): a pod
#                                   and its stats, hull-default, critest's AppArmor tests;
#                                   needs the host's registry filled (images.sh) and crictl
#                                   and critest (conformance/tools.sh)
#                        (default: the lane, DEFAULT_TESTS below)
#   -- ARGS              passed to every hull test binary (e.g. a test name filter)
#   --all                every hull integration test binary (runtime/tests/*.rs, also
#                        ones not in DEFAULT_TESTS), then DEFAULT_TESTS' runc and
#                        runtime-tools entries
#   --hull PATH          the hull binary the tests drive (default: target/debug/hull,
#                        the one cargo builds for the test binaries)
#   --no-build           do not run cargo; use the test binaries and checker already built
#   --timeout SECS       the whole VM run, boot to poweroff (default 2400)
#   --boot-timeout SECS  until the initramfs reports it booted (default 120)
#   --test-timeout SECS  each TEST inside the VM (default 900)
#   --stall-timeout SECS a guest that reported an RCU stall and printed nothing else
#                        for this long is hung (default 300)
#   --kernel PACKAGE     a linux-image-6.1.0-NN-amd64 package (default: the newest one
#                        already cached, else the newest apt knows)
#
# Exit status: the VM's result (0: every TEST passed, 1: some failed), or 2 when the lane
# itself failed: no boot, a kernel panic, a timeout, no result marker.
#
# Cache (gitignored): conformance/work/vm/ holds the unpacked kernel package and the
# initramfs, rebuilt only when the kernel, busybox or conformance/vm/init change. Nothing
# is installed on the host but Debian packages by name: qemu-system-x86, cpio,
# busybox-static and apparmor (apparmor_parser is used inside the VM through the shared /).
set -euo pipefail

# The lane: the cgroup v2 and AppArmor tests against hull and runc, runtime-tools'
# AppArmor test against both, then every root integration test on cgroup v2 and 6.1.
# runtime-tools on cgroup v2 and 6.1: its cgroup programs are v1-only ("cgroupv2 is not
# supported yet", for runc too), so these are the others. RT_BOTH runc passes in the VM and
# hull must too; RT_HULL hull passes and runc 1.1.5 does not (as on the host).
RT_BOTH=(config_updates_without_affect create default hostname kill kill_no_effect killsig
	linux_devices linux_masked_paths linux_ns_itype linux_ns_nopath linux_ns_path
	linux_ns_path_type linux_readonly_paths linux_sysctl linux_uid_mappings mounts process
	process_oom_score_adj process_user root_readonly_true state)
RT_HULL=(linux_mount_label linux_rootfs_propagation linux_seccomp hooks_stdin)
DEFAULT_TESTS=(
	cgroup_v2 runc:cgroup_v2
	apparmor runc:apparmor
	rt/linux_process_apparmor_profile runc:rt/linux_process_apparmor_profile
	lifecycle isolation failures features features_ns exec cgroup_ops hooks seccomp
	cve cve_paths adversarial
	cri
)
for t in "${RT_BOTH[@]}"; do DEFAULT_TESTS+=("rt/$t" "runc:rt/$t"); done
for t in "${RT_HULL[@]}"; do DEFAULT_TESTS+=("rt/$t"); done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$repo/conformance/work/vm
rt_work=$repo/conformance/work/runtime-tools

build=1
all=0
hull_bin=""
timeout_s=2400
boot_timeout_s=120
test_timeout_s=900
stall_timeout_s=300
kernel_pkg=${HULL_VM_KERNEL:-}
tests=()
libtest_args=()

die() {
	echo "vm/run.sh: FAILED: $*" >&2
	exit 2
}
log() { echo "vm/run.sh: $*" >&2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--no-build) build=0; shift ;;
	--all) all=1; shift ;;
	--hull) hull_bin=$(realpath "${2:?}"); shift 2 ;;
	--timeout) timeout_s=${2:?}; shift 2 ;;
	--boot-timeout) boot_timeout_s=${2:?}; shift 2 ;;
	--test-timeout) test_timeout_s=${2:?}; shift 2 ;;
	--stall-timeout) stall_timeout_s=${2:?}; shift 2 ;;
	--kernel) kernel_pkg=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; libtest_args=("$@"); break ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) tests+=("$1"); shift ;;
	esac
done
if [ "$all" -eq 1 ]; then
	for f in "$repo"/runtime/tests/*.rs; do tests+=("$(basename "$f" .rs)"); done
	for t in "${DEFAULT_TESTS[@]}"; do
		case "$t" in *:* | rt/* | cri) tests+=("$t") ;; esac
	done
fi
[ ${#tests[@]} -gt 0 ] || tests=("${DEFAULT_TESTS[@]}")
[ "$(id -u)" -eq 0 ] || die "run as root (qemu reads all of / to share it)"

# --- host packages -------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v apparmor_parser >/dev/null || need+=(apparmor)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' ||
	die "/bin/busybox is not static: install busybox-static"

# --- kernel ----------------------------------------------------------------------------
mkdir -p "$work"
if [ -z "$kernel_pkg" ]; then
	kernel_pkg=$(find "$work" -maxdepth 1 -name 'linux-image-6.1.0-*-amd64' -printf '%f\n' |
		sort -V | tail -n1)
fi
if [ -z "$kernel_pkg" ]; then
	kernel_pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' |
		awk '{print $1}' | sort -V | tail -n1)
	if [ -z "$kernel_pkg" ]; then
		apt-get update -qq
		kernel_pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' |
			awk '{print $1}' | sort -V | tail -n1)
	fi
	[ -n "$kernel_pkg" ] || die "apt knows no linux-image-6.1.0-NN-amd64 package"
fi
case "$kernel_pkg" in linux-image-6.1.0-*-amd64) ;; *) die "--kernel $kernel_pkg: want linux-image-6.1.0-NN-amd64" ;; esac
kdir=$work/$kernel_pkg
if [ ! -f "$kdir/.unpacked" ]; then
	log "fetching $kernel_pkg (apt-get download; nothing is installed)"
	rm -rf "$kdir" && mkdir -p "$kdir/dl"
	(cd "$kdir/dl" && apt-get download "$kernel_pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
		die "apt-get download $kernel_pkg"
	dpkg-deb -x "$kdir"/dl/*.deb "$kdir/root" || die "dpkg-deb -x $kernel_pkg"
	rm -rf "$kdir/dl"
	touch "$kdir/.unpacked"
fi
vmlinuz=$(find "$kdir/root/boot" -name 'vmlinuz-*' | head -n1)
kver=${vmlinuz##*/vmlinuz-}
moddir=$kdir/root/lib/modules/$kver
[ -f "$vmlinuz" ] && [ -d "$moddir" ] || die "$kernel_pkg has no vmlinuz or modules"

# --- initramfs -------------------------------------------------------------------------
# Modules in dependency order. The package has no modules.dep, so each module's
# dependencies come from its depends= modinfo field.
# brd gives two small ram disks: block devices for the io.max and device-rule tests.
# bridge and veth carry the pod network of the cri test.
WANTED_MODULES=(virtio_pci 9pnet_virtio 9p overlay brd bridge veth)
declare -A params=([brd]="rd_nr=2 rd_size=1024")
declare -A seen=()
order=()
ko_of() { find "$moddir/kernel" -name "$1.ko" -print -quit; }
add_module() {
	local m=$1 ko dep
	[ -n "${seen[$m]:-}" ] && return 0
	seen[$m]=1
	ko=$(ko_of "$m")
	[ -n "$ko" ] || die "module $m not found in $kernel_pkg"
	for dep in $(strings "$ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
		add_module "$dep"
	done
	order+=("$m")
}
for m in "${WANTED_MODULES[@]}"; do add_module "$m"; done

key=$( {
	echo "$kernel_pkg ${order[*]} ${params[*]}"
	sha256sum "$here/init" /bin/busybox
} | sha256sum | cut -c1-16)
initrd=$kdir/initramfs-$key.gz
if [ ! -f "$initrd" ]; then
	log "building the initramfs ($kver: ${order[*]})"
	stage=$(mktemp -d "$work/initramfs.XXXXXX")
	mkdir -p "$stage/bin" "$stage/modules"
	cp /bin/busybox "$stage/bin/busybox"
	install -m 0755 "$here/init" "$stage/init"
	for m in "${order[@]}"; do cp "$(ko_of "$m")" "$stage/modules/$m.ko"; done
	for m in "${order[@]}"; do echo "$m ${params[$m]:-}"; done >"$stage/modules/order"
	(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	rm -rf "$stage"
	find "$kdir" -maxdepth 1 -name 'initramfs-*.gz' ! -name "${initrd##*/}" -delete
fi

# --- test binaries ---------------------------------------------------------------------
# Built on the host: the VM's / is read-only. The checker is built exactly as the test
# harness would build it (runtime/tests/common/mod.rs) and passed as HULL_TEST_CHECKER.
checker_dir=$repo/target/hull-checker-static
checker=$checker_dir/x86_64-unknown-linux-gnu/release/hull-checker
declare -A test_bin=()
if [ "$build" -eq 1 ]; then
	log "building hull, its test binaries and the static checker on the host"
	(cd "$repo" && CARGO_TARGET_DIR=$checker_dir RUSTFLAGS='-C target-feature=+crt-static' \
		cargo build -q -p hull-checker --release --target x86_64-unknown-linux-gnu) ||
		die "building the static hull-checker"
	json=$(cd "$repo" && cargo test -q -p hull --no-run --message-format=json) ||
		die "cargo test -p hull --no-run"
	if [[ " ${tests[*]} " == *" cri "* ]]; then
		(cd "$repo" && cargo build -q -p hull -p hull-cri) || die "cargo build -p hull -p hull-cri"
	fi
	while read -r name exe; do
		test_bin[$name]=$exe
	done < <(jq -r 'select(.reason == "compiler-artifact" and .profile.test
		and .target.kind == ["test"] and .executable != null)
		| "\(.target.name) \(.executable)"' <<<"$json")
else
	for f in "$repo"/runtime/tests/*.rs; do
		name=$(basename "$f" .rs)
		exe=$(ls -t "$repo/target/debug/deps/$name"-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)
		[ -n "$exe" ] && test_bin[$name]=$exe
	done
fi
[ -x "$checker" ] || die "no static checker at $checker (run without --no-build)"
# The bundle template, built here once rather than by every test binary in the VM.
template=$work/template
"$repo/bundles/busybox/build.sh" --checker "$checker" "$template" 2>/dev/null ||
	die "building the bundle template ($repo/bundles/busybox/build.sh)"
[ -x "$repo/target/debug/hull" ] || die "no $repo/target/debug/hull (run without --no-build)"
mkdir -p "$repo/target/tmp"

# --- the job ---------------------------------------------------------------------------
nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
run_dir=$work/runs/$nonce
mkdir -p "$run_dir"
find "$work/runs" -mindepth 1 -maxdepth 1 -type d ! -name "$nonce" -mmin +1440 -exec rm -rf {} +
job=$run_dir/job.sh
q() { printf '%q ' "$@"; }
{
	echo "# written by conformance/vm/run.sh; sourced by guest.sh inside the VM"
	echo "test_timeout=$test_timeout_s"
	echo "export HULL_TEST_CHECKER=$(q "$checker") HULL_TEST_TEMPLATE=$(q "$template")"
	echo "cd $(q "$repo")"
	# The harness keeps its bundle template in CARGO_TARGET_TMPDIR (target/tmp).
	echo "tmpfs_over $(q "$repo/target/tmp") || return 1"
	for t in "${tests[@]}"; do
		case "$t" in
		sh:*)
			echo "run_test $(q "$t") bash -c $(q "${t#sh:}")"
			continue
			;;
		cri)
			tools=$repo/conformance/work/bin
			[ -x "$tools/critest" ] && [ -x "$tools/crictl" ] ||
				die "cri: no crictl or critest in $tools (conformance/tools.sh crictl critest)"
			echo "run_test cri bash $(q "$here/cri-test.sh" "$repo/target/debug" "$tools/crictl" "$tools/critest")"
			continue
			;;
		runc:* | /*:*) rt=${t%%:*} name=${t#*:} ;;
		*) rt=${hull_bin:-$repo/target/debug/hull} name=$t ;;
		esac
		[ "$rt" = runc ] && rt=$(command -v runc)
		[ -x "$rt" ] || die "$t: no runtime at $rt"
		case "$name" in
		rt/*)
			prog=$rt_work/bin/${name#rt/}
			[ -x "$prog" ] && [ -f "$rt_work/run/runtimetest" ] ||
				die "$t: no $prog (build the suite with conformance/runtime-tools.sh first)"
			echo "run_test $(q "$t") bash $(q "$here/rt-test.sh" "$prog" "$rt_work/run" "$rt")"
			;;
		*)
			exe=${test_bin[$name]:-}
			[ -n "$exe" ] || die "no test binary for $name (runtime/tests/$name.rs)"
			# --show-output: the SKIPPED lines of passing tests reach the console too.
			echo "run_test $(q "$t") env HULL_TEST_RUNTIME=$(q "$rt") $(q "$exe" --show-output "${libtest_args[@]}")"
			;;
		esac
	done
} >"$job"

# --- boot ------------------------------------------------------------------------------
console=$run_dir/console.log
: >"$console"
log "booting $kver under qemu (TCG), run $nonce; console log: $console"
start=$(date +%s)
# Software emulation (TCG): nested KVM on this machine kind does not boot a guest.
qemu-system-x86_64 -accel tcg -m 2048 -smp 2 \
	-display none -monitor none -serial "file:$console" -no-reboot \
	-kernel "$vmlinuz" -initrd "$initrd" \
	-append "console=ttyS0 panic=-1 loglevel=5 hull.nonce=$nonce hull.guest=$here/guest.sh hull.job=$job" \
	-virtfs "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap" \
	</dev/null >"$run_dir/qemu.out" 2>&1 &
qemu_pid=$!
# Only the qemu this script started is ever killed, by its pid.
trap 'kill "$qemu_pid" 2>/dev/null || true' EXIT
tail -n +1 -f --pid="$qemu_pid" "$console" &
tail_pid=$!

why=""
booted=0
while kill -0 "$qemu_pid" 2>/dev/null; do
	now=$(($(date +%s) - start))
	if [ "$booted" -eq 0 ]; then
		if grep -q "^HULL-VM-BOOTED $nonce" "$console"; then
			booted=1
			log "booted in ${now}s"
		elif [ "$now" -ge "$boot_timeout_s" ]; then
			why="the VM did not boot within ${boot_timeout_s}s"
			break
		fi
	fi
	if [ "$now" -ge "$timeout_s" ]; then
		why="the VM run exceeded ${timeout_s}s"
		break
	fi
	if grep -q 'Kernel panic - not syncing' "$console"; then
		why="kernel panic"
		break
	fi
	# A stopped vCPU never recovers, and then the in-guest test timeouts cannot fire:
	# after an RCU stall report, no user-space output (lines without the kernel's
	# timestamp) for --stall-timeout means the guest hung.
	if grep -q 'rcu: INFO: rcu_.* detected .*stalls' "$console"; then
		last_user=$(grep -vcE '^\[ *[0-9]+\.[0-9]+\]' "$console" || true)
		if [ "$last_user" != "${stall_mark:-}" ]; then
			stall_mark=$last_user stall_since=$now
		elif [ $((now - stall_since)) -ge "$stall_timeout_s" ]; then
			why="the guest hung: RCU stalls and no test output for ${stall_timeout_s}s"
			break
		fi
	fi
	sleep 1
done
if [ -n "$why" ]; then
	kill "$qemu_pid" 2>/dev/null || true
fi
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
wait "$tail_pid" 2>/dev/null || true
trap - EXIT
elapsed=$(($(date +%s) - start))

[ -z "$why" ] || die "$why (console log: $console)"
grep -q 'Kernel panic - not syncing' "$console" && die "kernel panic (console log: $console)"
grep -q '^HULL-VM-INIT-FAILED' "$console" && die "$(grep -m1 '^HULL-VM-INIT-FAILED' "$console" | tr -d '\r')"
[ "$booted" -eq 1 ] || grep -q "^HULL-VM-BOOTED $nonce" "$console" ||
	die "the VM never reported booting (qemu exit $qemu_rc; $run_dir/qemu.out: $(head -c 400 "$run_dir/qemu.out"))"
marker=$(tr -d '\r' <"$console" | grep -E "^HULL-VM-RESULT $nonce rc=[0-9]+$" | tail -n1 || true)
[ -n "$marker" ] || die "no result marker 'HULL-VM-RESULT $nonce rc=N' on the console (qemu exit $qemu_rc; console log: $console)"
rc=${marker##*rc=}
log "VM finished in ${elapsed}s: rc=$rc"
[ "$rc" -eq 0 ] && exit 0
exit 1
