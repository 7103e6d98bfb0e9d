#!/bin/bash
# Runs one runtime-tools validation program inside the VM (run.sh's `rt/NAME` tests).
#
# usage: rt-test.sh PROGRAM RUNDIR RUNTIME
#
# PROGRAM is conformance/work/runtime-tools/bin/NAME, RUNDIR the directory holding
# runtimetest and rootfs-amd64.tar.gz (it is only read; bundles go to /tmp), RUNTIME the
# runtime binary. The TAP goes to stdout. It passes when the program exits 0, reports at
# least one `ok` and no `not ok`, and sums up to its plan: the rule runtime-tools.sh uses,
# except that an assertion is required (on this kernel every program asserts something).
#
# linux_process_apparmor_profile asks for a profile named acme_secure_profile: it is
# loaded here (allowing everything) first, as a host administrator would have it loaded.
set -u
prog=$1 rundir=$2 runtime=$3
name=$(basename "$prog")

if [ "$name" = linux_process_apparmor_profile ]; then
	profile=$(mktemp /tmp/acme.XXXXXX)
	printf '%s\n' 'profile acme_secure_profile flags=(attach_disconnected,mediate_deleted) {' \
		'  file,' '  capability,' '  network,' '  signal,' '  ptrace,' '  unix,' '  mount,' \
		'  umount,' '  pivot_root,' '}' >"$profile"
	apparmor_parser --replace --skip-cache "$profile" || {
		echo "rt-test.sh: cannot load acme_secure_profile"
		exit 1
	}
fi

tap=$(mktemp /tmp/rt-tap.XXXXXX)
rc=0
(cd "$rundir" && RUNTIME=$runtime timeout -k 5 120 "$prog" </dev/null) >"$tap" 2>&1 || rc=$?
cat "$tap"
awk -v rc="$rc" '
	/^1\.\.[0-9]+/ { plan += substr($1, 4) + 0; have_plan = 1 }
	/^ok / { if ($0 !~ /# [Ss][Kk][Ii][Pp]/) p++ }
	/^not ok / { if ($0 !~ /# TODO/) f++ }
	END {
		printf "rt-test.sh: %d ok, %d not ok, plan %d, exit %d\n", p, f, plan, rc
		exit !(rc == 0 && f == 0 && p > 0 && (!have_plan || plan >= p + f))
	}' "$tap"
