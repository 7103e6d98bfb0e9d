#!/usr/bin/env bash
# Runs the opencontainers runtime-tools validation suite (validation/<name>/<name>.go)
# against hull, runc and crun side by side, and writes a comparison table.
#
# usage:
#   conformance/runtime-tools.sh [options]
#
#   (no options)              every validation test against hull, runc and crun;
#                             writes conformance/results/runtime-tools.{md,tsv}
#   --runtime NAME            hull, runc, crun or hull-noseccomp (a diagnostic: hull with
#                             linux.seccomp deleted from config.json); repeatable
#   --only-pass-list FILE     run only the tests named in FILE (one a line, '#' comments);
#                             exit 1 if any of them does not pass. Results go to
#                             conformance/work/ only; conformance/results/ is left alone.
#   --test NAME               run only this test; repeatable
#   --timeout SECS            per test and runtime (default 60)
#   --write-pass-list FILE    after a full run, write the tests runc passes to FILE
#   --hull PATH               hull binary to test (default: build target/release/hull)
#   --no-build                do not run cargo; use the hull binary as it is
#   --no-install              do not apt-get install runc/crun
#
# The suite is fetched from the Go module proxy at a pinned pseudo-version (RT_VERSION
# below), built once into conformance/work/runtime-tools/ and reused while the version
# matches. Tests run sequentially: they share cgroup paths and /tmp bundle names.
set -euo pipefail

RT_MODULE=github.com/opencontainers/runtime-tools
# Pinned: upstream main as of 2025-11-14 (commit edf4cb3d2116). v0.9.0 (2019) predates go.mod.
RT_VERSION=v0.9.1-0.20251114084447-edf4cb3d2116

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
work=$here/work/runtime-tools
results=$here/results

runtimes=()
tests=()
pass_list=""
write_pass_list=""
timeout_s=60
hull_bin=""
build=1
install=1

die() {
	echo "runtime-tools.sh: $*" >&2
	exit 2
}
log() { echo "runtime-tools.sh: $*" >&2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--runtime) runtimes+=("${2:?}"); shift 2 ;;
	--only-pass-list) pass_list=${2:?}; shift 2 ;;
	--test) tests+=("${2:?}"); shift 2 ;;
	--timeout) timeout_s=${2:?}; shift 2 ;;
	--write-pass-list) write_pass_list=${2:?}; shift 2 ;;
	--hull) hull_bin=${2:?}; shift 2 ;;
	--no-build) build=0; shift ;;
	--no-install) install=0; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[ ${#runtimes[@]} -gt 0 ] || runtimes=(hull runc crun)
for rt in "${runtimes[@]}"; do
	case "$rt" in hull | runc | crun | hull-noseccomp) ;; *) die "unknown runtime $rt (hull, runc, crun or hull-noseccomp)" ;; esac
done
[ "$(id -u)" = 0 ] || die "must run as root"

# --- dependencies --------------------------------------------------------------
need_pkgs=()
for rt in "${runtimes[@]}"; do
	case "$rt" in runc | crun) command -v "$rt" >/dev/null || need_pkgs+=("$rt") ;; esac
done
command -v go >/dev/null || die "the Go toolchain is required (go not in PATH)"
command -v file >/dev/null || need_pkgs+=(file)
command -v jq >/dev/null || need_pkgs+=(jq)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	[ $install = 1 ] || die "missing ${need_pkgs[*]} and --no-install given"
	log "installing ${need_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# --- the suite -------------------------------------------------------------------
src=$work/src
bin=$work/bin
run=$work/run # each test's working directory: runtimetest + rootfs-amd64.tar.gz
stamp=$work/built-version
mkdir -p "$work"
if [ "$(cat "$stamp" 2>/dev/null)" != "$RT_VERSION" ] || [ ! -x "$run/runtimetest" ]; then
	log "fetching $RT_MODULE@$RT_VERSION"
	moddir=$(GOFLAGS=-mod=mod go mod download -json "$RT_MODULE@$RT_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$moddir" ] || die "go mod download gave no directory for $RT_MODULE@$RT_VERSION"
	rm -rf "$src" "$bin" "$run" "$stamp"
	cp -r "$moddir" "$src"
	chmod -R u+w "$src"
	# Module zips drop vendored packages (only vendor/modules.txt survives), so build
	# in module mode against go.sum instead.
	rm -rf "$src/vendor"
	mkdir -p "$bin" "$run"
	log "building the validation tests and runtimetest"
	(cd "$src" && GOFLAGS=-mod=mod go build -o "$bin/" ./validation/...)
	(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -tags 'netgo osusergo' \
		-ldflags '-extldflags -static' -o "$run/runtimetest" ./cmd/runtimetest)
	file -L "$run/runtimetest" | grep -q 'statically linked' || die "runtimetest is not static"
	if [ -f "$src/rootfs-amd64.tar.gz" ]; then
		cp "$src/rootfs-amd64.tar.gz" "$run/"
		echo "module" >"$work/rootfs-origin"
	else
		# Older snapshots of the module lack the tarball: make a busybox-static one.
		log "rootfs-amd64.tar.gz is not in the module: building one from busybox-static"
		"$repo/bundles/busybox/build.sh" "$work/busybox-bundle" true
		tar -C "$work/busybox-bundle/rootfs" -czf "$run/rootfs-amd64.tar.gz" .
		echo "busybox-static (bundles/busybox/build.sh)" >"$work/rootfs-origin"
	fi
	echo "$RT_VERSION" >"$stamp"
fi

all_tests=()
for f in "$src"/validation/*/; do
	n=$(basename "$f")
	[ "$n" = util ] && continue
	[ -f "$f/$n.go" ] && all_tests+=("$n")
done

if [ -n "$pass_list" ]; then
	[ -f "$pass_list" ] || die "pass list $pass_list not found"
	mapfile -t tests < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$pass_list")
	[ ${#tests[@]} -gt 0 ] || die "pass list $pass_list is empty"
elif [ ${#tests[@]} -eq 0 ]; then
	tests=("${all_tests[@]}")
fi
for t in "${tests[@]}"; do
	[ -x "$bin/$t" ] || die "no such validation test: $t"
done

# --- runtimes --------------------------------------------------------------------
declare -A rtcmd
for rt in "${runtimes[@]}"; do
	case "$rt" in
	hull)
		if [ -z "$hull_bin" ]; then
			if [ $build = 1 ]; then
				log "cargo build --release -p hull"
				(cd "$repo" && cargo build --release -q -p hull)
			fi
			hull_bin=$repo/target/release/hull
		fi
		[ -x "$hull_bin" ] || die "hull binary $hull_bin not found"
		# A private copy, so a rebuild during the run does not swap the binary under it.
		cp "$hull_bin" "$work/hull"
		hull_rev="$(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?'), binary built $(date -u -r "$hull_bin" +%Y-%m-%dT%H:%MZ)"
		rtcmd[hull]=$work/hull
		;;
	runc) rtcmd[runc]=$(command -v runc) ;;
	crun)
		# crun 1.8 refuses a hybrid cgroup layout (v1 controllers plus a cgroup2 mount at
		# /sys/fs/cgroup/unified): hide the unified mount in a private mount namespace.
		# crun 1.8 also refuses ociVersion above 1.1.x ("unknown version specified"),
		# while the suite writes runtime-spec 1.3.0: lower it to 1.1.0 on create/run.
		cat >"$work/crun-wrapper" <<'EOF'
#!/bin/sh
case "$1" in
create | run)
	bundle=. prev=
	for a in "$@"; do
		case "$prev" in --bundle | -b) bundle=$a ;; esac
		case "$a" in --bundle=*) bundle=${a#--bundle=} ;; esac
		prev=$a
	done
	c=$bundle/config.json
	if [ -f "$c" ] && ! jq -e '.ociVersion | test("^1\\.[01]\\.")' "$c" >/dev/null 2>&1; then
		jq -c '.ociVersion = "1.1.0"' "$c" >"$c.crun-wrapper" && cat "$c.crun-wrapper" >"$c" && rm -f "$c.crun-wrapper"
	fi
	;;
esac
exec unshare --mount --propagation private sh -c \
	'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi; exec crun "$@"' crun "$@"
EOF
		chmod 0755 "$work/crun-wrapper"
		rtcmd[crun]=$work/crun-wrapper
		;;
	hull-noseccomp)
		# Diagnostic only, not conformance: the suite's default config carries a seccomp
		# profile, which hull refuses until it implements seccomp. This column deletes
		# linux.seccomp on create/run to show what fails behind that refusal.
		[ -n "${rtcmd[hull]:-}" ] || die "hull-noseccomp needs --runtime hull before it"
		sed "s|@HULL@|${rtcmd[hull]}|" >"$work/hull-noseccomp" <<'EOF'
#!/bin/sh
case "$1" in
create | run)
	bundle=. prev=
	for a in "$@"; do
		case "$prev" in --bundle | -b) bundle=$a ;; esac
		case "$a" in --bundle=*) bundle=${a#--bundle=} ;; esac
		prev=$a
	done
	c=$bundle/config.json
	if [ -f "$c" ] && jq -e '.linux.seccomp' "$c" >/dev/null 2>&1; then
		jq -c 'del(.linux.seccomp)' "$c" >"$c.noseccomp" && cat "$c.noseccomp" >"$c" && rm -f "$c.noseccomp"
	fi
	;;
esac
exec @HULL@ "$@"
EOF
		chmod 0755 "$work/hull-noseccomp"
		rtcmd[hull-noseccomp]=$work/hull-noseccomp
		;;
	esac
done

rt_version() {
	case "$1" in
	hull) echo "hull $("${rtcmd[hull]}" --version 2>/dev/null | awk '{print $NF}') (tree $hull_rev)" ;;
	runc) runc --version | head -1 ;;
	crun) echo "$(crun --version | head -1) (via a wrapper: unified cgroup2 mount hidden, ociVersion lowered to 1.1.0)" ;;
	hull-noseccomp) echo "DIAGNOSTIC, not conformance: the hull binary above, with linux.seccomp deleted from config.json before create" ;;
	esac
}

list_ids() {
	"${rtcmd[$1]}" list -q 2>/dev/null || true
}

# --- host facts for the notes column ---------------------------------------------
v1_controller() { # is there a cgroup v1 hierarchy with this controller?
	awk -v c="$1" '$0 ~ / - cgroup / { n = split($NF, o, ","); for (i = 1; i <= n; i++) if (o[i] == c) f = 1 } END { exit !f }' /proc/self/mountinfo
}
apparmor=0
[ -e /sys/kernel/security/apparmor ] || [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ] && apparmor=1
cg_unified=0
grep -q ' - cgroup2 ' /proc/self/mountinfo && grep -q ' - cgroup ' /proc/self/mountinfo && cg_unified=1

cap_names=(chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap
	linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner
	sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice
	sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap
	mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf
	checkpoint_restore)
missing_caps() { # capabilities the kernel has but this shell's bounding set lacks
	local bnd last i out=""
	bnd=$((16#$(awk '/^CapBnd/ { print $2 }' /proc/self/status)))
	last=$(cat /proc/sys/kernel/cap_last_cap)
	for ((i = 0; i <= last; i++)); do
		((bnd >> i & 1)) || out="$out CAP_$(tr a-z A-Z <<<"${cap_names[$i]:-$i}")"
	done
	echo "${out# }"
}
host_missing_caps=$(missing_caps)

host_note() { # facts about the host or the suite that explain failures of every runtime
	local t=$1 n=""
	case "$t" in
	linux_cgroups_*) n="cgroup v1-only test (host: v1 hybrid)" ;;
	esac
	case "$t" in
	*hugetlb) v1_controller hugetlb || n="$n; host: no v1 hugetlb hierarchy (hugetlb is only on the cgroup2 mount)" ;;
	*network) { v1_controller net_cls && v1_controller net_prio; } || n="$n; host: no v1 net_cls/net_prio hierarchy" ;;
	*blkio) [ -e /sys/fs/cgroup/blkio/blkio.weight ] || n="$n; host: no blkio.weight/leaf_weight (no CFQ/BFQ weight files)" ;;
	*memory) n="$n; kernel-memory limits (memory.kmem.*) are no longer enforced by Linux >= 5.16 (kernel and kernelTCP checks)" ;;
	*pids | delete_resources) n="$n; suite bug: the pids check compares two pointers" ;;
	linux_process_apparmor_profile) [ $apparmor = 1 ] || n="host: no AppArmor" ;;
	linux_mount_label) [ -e /sys/fs/selinux/enforce ] || n="host: SELinux off (runc still passes the context= mount option, which the kernel rejects)" ;;
	process_capabilities) [ -z "$host_missing_caps" ] || n="host: the bounding set here lacks $host_missing_caps, so granting every capability fails" ;;
	process_capabilities_fail) n="passes when create refuses the unknown CAP_TEST" ;;
	process_rlimits_fail) n="passes when create refuses the unknown RLIMIT_TEST" ;;
	prestart) n="suite expects prestart hooks to run at start, not create" ;;
	start) n="suite expects create to accept a config without process" ;;
	esac
	echo "${n#; }"
}

# --- running ---------------------------------------------------------------------
if [ -n "$pass_list" ]; then
	out=$work/out-passlist
else
	out=$work/out
fi
rm -rf "$out"
mkdir -p "$out"
tsv=$out/results.tsv
printf 'test\truntime\tstatus\tok\ttotal\trc\tseconds\tnote\n' >"$tsv"

# classify FILE.tap RC -> "status ok total"
classify() {
	local tap=$1 rc=$2
	awk -v rc="$rc" '
		# Some tests print several TAP streams (one per sub-test): add their plans up.
		/^1\.\.[0-9]+/ { plan += substr($1, 4) + 0; have_plan = 1 }
		/^ok / { if ($0 ~ /# [Ss][Kk][Ii][Pp]/) s++; else p++ }
		/^not ok / { if ($0 ~ /# TODO/) p++; else f++ }
		/^  *"error": "[^"]/ { err = 1 }
		END {
			total = p + f + s
			if (rc == 124 || rc == 137) st = "timeout"
			# No assertion at all: the hook tests print "1..0" plus an "error" diagnostic
			# when they fail; the *_fail tests exit 0 silently when the runtime refused
			# the config as it must, and exit 1 when it did not.
			else if (total == 0) st = (rc == 0 && !err) ? "pass" : "fail"
			else if (f == 0 && rc == 0 && (!have_plan || plan == total)) st = (p == 0) ? "skip" : "pass"
			else st = "fail"
			printf "%s %d %d\n", st, p, total
		}' "$tap"
}

run_one() { # test runtime
	local t=$1 rt=$2 d=$out/$2 rc=0 before after id start secs note=""
	mkdir -p "$d"
	before=$(list_ids "$rt")
	local tmp_before
	tmp_before=$(ls -d /tmp/ocitest* 2>/dev/null | sort || true)
	start=$(date +%s.%N)
	(cd "$run" && RUNTIME=${rtcmd[$rt]} timeout -k 5 "$timeout_s" "$bin/$t" \
		>"$d/$t.tap" 2>"$d/$t.err" </dev/null) || rc=$?
	secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	# Remove what a failed or timed-out test left behind: containers, then bundles.
	after=$(list_ids "$rt")
	for id in $after; do
		grep -qxF "$id" <<<"$before" && continue
		"${rtcmd[$rt]}" delete --force "$id" >/dev/null 2>&1 || true
	done
	# A runtime that runs without a mount namespace (runc in linux_ns_itype) leaves the
	# container's mounts in ours: detach them before removing the bundle.
	for b in $(ls -d /tmp/ocitest* 2>/dev/null | sort); do
		grep -qxF "$b" <<<"$tmp_before" && continue
		if awk -v b="$b" '$5 == b || index($5, b "/") == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
			note="left mounts under its bundle in the host mount namespace"
			umount -R -l "$b" 2>/dev/null || true
		fi
		rm -rf "$b" 2>/dev/null || true
	done
	read -r st ok total < <(classify "$d/$t.tap" "$rc")
	local leak=$note
	note=""
	if [ "$st" != pass ] && [ "$st" != skip ]; then
		if [ "$rt" = crun ] && grep -q 'hybrid mode not supported' "$d/$t.err" "$d/$t.tap"; then
			note="crun refuses the hybrid cgroup layout"
		elif [ "$rt" = hull ] || [ "$rt" = hull-noseccomp ]; then
			note=$(grep -ohE 'invalid value at `[^`]*`: [^"]*is not supported by hull yet' "$d/$t.err" "$d/$t.tap" |
				head -1 | sed -E 's/invalid value at `([^`]*)`.*/\1/' || true)
			[ -n "$note" ] && note="$rt refuses $note (not implemented)"
		fi
	fi
	[ -n "$leak" ] && note="${note:+$note; }$rt $leak"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rt" "$st" "$ok" "$total" "$rc" "$secs" "$note" >>"$tsv"
	printf '  %-36s %-5s %-8s %3s/%-3s %6ss %s\n' "$t" "$rt" "$st" "$ok" "$total" "$secs" "$note" >&2
}

for rt in "${runtimes[@]}"; do log "$(rt_version "$rt"): ${rtcmd[$rt]}"; done
log "${#tests[@]} tests x ${#runtimes[@]} runtimes, timeout ${timeout_s}s each; logs in $out"
for t in "${tests[@]}"; do
	for rt in "${runtimes[@]}"; do
		run_one "$t" "$rt"
	done
done

# --- the table ---------------------------------------------------------------------
cell() { # status ok total
	case "$1" in
	fail) if [ "$3" = 0 ]; then echo "fail (no assertion)"; else echo "fail ($2 of $3)"; fi ;;
	*) echo "$1" ;;
	esac
}

md=$out/results.md
{
	echo "# runtime-tools validation: ${runtimes[*]}"
	echo
	echo "Generated by \`conformance/runtime-tools.sh\` on $(date -u +%Y-%m-%d) ($(uname -r), $(
		[ $cg_unified = 1 ] && echo "cgroup v1 hybrid" || echo "cgroup layout: $(stat -fc %T /sys/fs/cgroup)"
	), AppArmor $([ $apparmor = 1 ] && echo on || echo absent))."
	echo "Suite: \`$RT_MODULE@$RT_VERSION\`; rootfs-amd64.tar.gz from $(cat "$work/rootfs-origin")."
	for rt in "${runtimes[@]}"; do echo "- $rt: $(rt_version "$rt")"; done
	echo
	echo "Cells: pass / fail (n of m TAP assertions ok) / skip / timeout (${timeout_s}s)."
	echo
	printf '| test |'
	for rt in "${runtimes[@]}"; do printf ' %s |' "$rt"; done
	printf ' notes |\n|---|'
	for rt in "${runtimes[@]}"; do printf -- '---|'; done
	printf -- '---|\n'
	for t in "${tests[@]}"; do
		printf '| %s |' "$t"
		notes=$(host_note "$t")
		declare -A stat=()
		for rt in "${runtimes[@]}"; do
			IFS=$'\t' read -r _ _ st ok total _ _ note < <(awk -F'\t' -v t="$t" -v r="$rt" '$1 == t && $2 == r' "$tsv")
			stat[$rt]=$st
			printf ' %s |' "$(cell "$st" "$ok" "$total")"
			[ -n "$note" ] && notes="${notes:+$notes; }$note"
		done
		if [ -n "${stat[runc]:-}" ] && [ -n "${stat[crun]:-}" ] && [ "${stat[runc]}" != pass ] && [ "${stat[crun]}" != pass ]; then
			notes="${notes:+$notes; }runc and crun fail too"
		fi
		if [ "${stat[hull]:-}" != pass ] && [ "${stat[hull-noseccomp]:-}" = pass ] && [ "$t" != linux_seccomp ]; then
			notes="${notes:+$notes; }hull passes once linux.seccomp is removed"
		fi
		if [ "$t" = linux_seccomp ] && [ -n "${stat[hull-noseccomp]:-}" ]; then
			notes="${notes:+$notes; }hull-noseccomp column meaningless here (the filter under test is deleted)"
		fi
		unset stat
		printf ' %s |\n' "$notes"
	done
	echo
	printf 'Totals (pass of %d):' "${#tests[@]}"
	for rt in "${runtimes[@]}"; do
		printf ' %s %d;' "$rt" "$(awk -F'\t' -v r="$rt" '$2 == r && $3 == "pass"' "$tsv" | wc -l)"
	done
	echo
	for h in hull hull-noseccomp; do
		[[ " ${runtimes[*]} " == *" $h "* && " ${runtimes[*]} " == *" runc "* ]] || continue
		echo
		echo "## Tests runc passes and $h does not"
		for t in "${tests[@]}"; do
			r=$(awk -F'\t' -v t="$t" '$1 == t && $2 == "runc" { print $3 }' "$tsv")
			hs=$(awk -F'\t' -v t="$t" -v h="$h" '$1 == t && $2 == h { print $3 }' "$tsv")
			[ "$r" = pass ] && [ "$hs" != pass ] || continue
			echo
			echo "### $t ($h: $hs)"
			echo
			echo '```'
			grep -E '^not ok' "$out/$h/$t.tap" | head -20 || true
			grep -vE '^(ok|not ok|1\.\.|TAP version)' "$out/$h/$t.err" | head -8 || true
			echo '```'
		done
	done
} >"$md"

cat "$md"
if [ -z "$pass_list" ] && [ ${#tests[@]} -eq ${#all_tests[@]} ]; then
	mkdir -p "$results"
	cp "$md" "$results/runtime-tools.md"
	cp "$tsv" "$results/runtime-tools.tsv"
	log "wrote $results/runtime-tools.md and runtime-tools.tsv"
fi
if [ -n "$write_pass_list" ]; then
	{
		echo "# runtime-tools validation tests runc $(runc --version | head -1 | awk '{print $3}') passes on this host"
		echo "# (generated by conformance/runtime-tools.sh --write-pass-list; CI runs these against hull)"
		awk -F'\t' '$2 == "runc" && $3 == "pass" { print $1 }' "$tsv"
	} >"$write_pass_list"
	log "wrote $write_pass_list"
fi

# --- verdict -----------------------------------------------------------------------
failed=0
passed=0
for rt in "${runtimes[@]}"; do
	p=$(awk -F'\t' -v r="$rt" '$2 == r && ($3 == "pass" || $3 == "skip")' "$tsv" | wc -l)
	f=$(awk -F'\t' -v r="$rt" '$2 == r && $3 != "pass" && $3 != "skip"' "$tsv" | wc -l)
	passed=$((passed + p))
	failed=$((failed + f))
done
echo "runtime-tools: $passed passed, $failed failed"
if [ -n "$pass_list" ] && [ $failed -gt 0 ]; then
	exit 1
fi
exit 0
