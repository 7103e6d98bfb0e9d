#!/bin/bash
# Stage 2 of the VM lane: PID 1 after switch_root into the host's / (read-only 9p).
#
# Runs the job file run.sh wrote (hull.job= on the kernel command line), prints each
# test's output to the console (ttyS0, which run.sh streams), then one line
#     HULL-VM-RESULT <nonce> rc=<N>
# and powers the VM off. run.sh trusts nothing else: no such line with this boot's nonce
# means the lane failed.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TMPDIR=/tmp

arg() {
	local w
	for w in $(cat /proc/cmdline); do
		case "$w" in "$1"=*) echo "${w#*=}" ;; esac
	done
}
nonce=$(arg hull.nonce)
job=$(arg hull.job)

finish() {
	echo "HULL-VM-RESULT $nonce rc=$1"
	# The marker must leave the UART before the power goes.
	sleep 1
	busybox poweroff -f
	echo o >/proc/sysrq-trigger
	sleep 60
}

# PID 1 must never exit (that panics the kernel): anything unexpected ends in finish.
trap 'finish 125' ERR

hostname hull-vm
ip link set lo up 2>/dev/null || busybox ip link set lo up

echo "== hull VM lane: $(uname -sr), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
echo "cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "apparmor enabled: $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)"
mount | awk '$5 != "9p" || $3 == "/" {print "  mount: " $0}'

if [ -z "$job" ] || [ ! -f "$job" ]; then
	echo "guest.sh: no job file (hull.job=$job)"
	trap - ERR
	finish 126
fi

# Per-test bookkeeping used by the job file.
declare -a results=()
failed=0
test_timeout=900

# run_test NAME CMD...: runs one test command with its output on the console.
run_test() {
	local name=$1 start rc
	shift
	echo
	echo "== [$name] start"
	start=$(date +%s)
	timeout --kill-after=10 "$test_timeout" "$@" </dev/null
	rc=$?
	local secs=$(($(date +%s) - start))
	if [ "$rc" -eq 0 ]; then
		results+=("PASS $name (${secs}s)")
	else
		[ "$rc" -eq 124 ] && echo "== [$name] timed out after ${test_timeout}s"
		results+=("FAIL $name rc=$rc (${secs}s)")
		failed=$((failed + 1))
	fi
	echo "== [$name] end rc=$rc ${secs}s"
}

# tmpfs_over DIR: a writable tmpfs on a directory of the read-only host tree.
tmpfs_over() {
	mount -t tmpfs -o mode=1777 tmpfs "$1" || {
		echo "guest.sh: cannot mount a tmpfs on $1"
		return 1
	}
}

trap - ERR
# shellcheck source=/dev/null
. "$job"
rc=$?
[ "$rc" -ne 0 ] && failed=$((failed + 1)) && results+=("FAIL job file rc=$rc")

echo
echo "== summary"
for r in "${results[@]}"; do echo "  $r"; done
[ "${#results[@]}" -gt 0 ] || { echo "  no test ran"; failed=1; }
finish $((failed > 0 ? 1 : 0))
