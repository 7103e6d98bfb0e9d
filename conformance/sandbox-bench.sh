#!/usr/bin/env bash
# Side-by-side benchmark of hull-sandbox against hull (no sandbox) and Debian's
# runsc on the ptrace platform (issue 6, "Side by side with gVisor").
#
# usage: conformance/sandbox-bench.sh [--quick] [--debug] [--out FILE]
#
#   --quick   fewer iterations (a smoke run; the figures are noisier)
#   --debug   use target/debug binaries even if release ones exist
#   --out     where to write the Markdown report
#             (default conformance/results/sandbox-bench.md)
#
# Every runtime runs the same static programs on the same rootfs, built by
# bundles/sandbox/build.sh: /opt/bench/getpid, /opt/bench/openread and
# /opt/bench/forkexec time themselves with CLOCK_MONOTONIC inside the workload,
# so runtime start-up is excluded from those three. Each figure is the median of
# $REPS runs (runtimes interleaved). Start-up to exit of /bin/true is timed from outside with hyperfine.
# Peak memory is GNU time's "Maximum resident set size": the largest RSS of any
# single process in the tree the launcher waits for (the launcher itself or a
# reaped descendant), not a sum over processes, and only processes that are
# waited for count.
#
# The three launchers:
#   hull          hull run -b <bundle> -f <config with the argv>   (namespaces, no sandbox)
#   hull-sandbox  hull-sandbox do --rootfs <rootfs> -- <argv>
#   runsc         runsc --platform=ptrace --network=none do -root <rootfs> -- <argv>
# Each run writes its stdout to its own file: runsc output written to a regular
# file shared between runs has been seen to overwrite the start of the file.
#
# Needs root, gcc, rustc, jq, busybox-static, runsc, and optionally hyperfine
# (falls back to a loop timed with date +%s%N). Binaries: target/{release,debug}/hull
# and hull-sandbox; build them first (cargo build [--release] -p hull -p hull-sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

quick=0
profile=""
out=conformance/results/sandbox-bench.md
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--debug) profile=debug ;;
	--out)
		out=$2
		shift
		;;
	*)
		echo "usage: $0 [--quick] [--debug] [--out FILE]" >&2
		exit 2
		;;
	esac
	shift
done

die() {
	echo "sandbox-bench: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (hull and runsc create namespaces)"
command -v runsc >/dev/null || die "runsc not found: apt-get install runsc"
command -v jq >/dev/null || die "jq not found: apt-get install jq"
[ -x /usr/bin/time ] || die "/usr/bin/time not found: apt-get install time"

target=${CARGO_TARGET_DIR:-$repo/target}
pick() { # pick NAME: the release binary unless --debug or absent
	local name=$1
	if [ "$profile" != debug ] && [ -x "$target/release/$name" ]; then
		echo "$target/release/$name"
	elif [ -x "$target/debug/$name" ]; then
		echo "$target/debug/$name"
	else
		die "$name not built: cargo build -p $name"
	fi
}
HULL=$(pick hull)
SBX=$(pick hull-sandbox)

if [ "$quick" -eq 1 ]; then
	REPS=1 N_GETPID=20000 N_OPEN=5000 N_FORK=50 N_START=5
else
	REPS=5 N_GETPID=100000 N_OPEN=20000 N_FORK=200 N_START=20
fi

work=$(mktemp -d /tmp/sandbox-bench.XXXXXX)
cleanup() {
	# Containers are removed by `hull run` itself; kill and delete any that are
	# left after an interrupted run, then remove the scratch dir.
	if [ -d "$work/hull-state" ]; then
		for id in $("$HULL" --root "$work/hull-state" list -q 2>/dev/null || true); do
			"$HULL" --root "$work/hull-state" delete --force "$id" >/dev/null 2>&1 || true
		done
	fi
	rm -rf -- "$work"
}
trap cleanup EXIT
bundle=$work/bundle
rootfs=$bundle/rootfs
bundles/sandbox/build.sh "$bundle" >/dev/null 2>"$work/build.log" ||
	die "bundles/sandbox/build.sh failed: $(cat "$work/build.log")"
mkdir -p "$work/hull-state" "$work/runsc-state" "$work/out"

seq_no=0
# command_for RUNTIME ARGV...: sets the array `cmd` to the command that runs ARGV
# under RUNTIME. For hull it writes a config.json with that argv first and leaves
# the container id as the last word, so callers can make it unique.
command_for() {
	local rt=$1
	shift
	# Callers often run in a command substitution (a subshell), so the counter
	# alone would repeat: $BASHPID keeps file names and container ids unique.
	seq_no=$((seq_no + 1))
	local tag=$BASHPID-$seq_no
	case "$rt" in
	hull)
		local cfg=$work/out/cfg-$tag.json
		# The bundle's root is read-only; /tmp gets a tmpfs as both sandboxes give
		# the workload a writable /tmp (threads writes a file there).
		jq --args '.process.args = $ARGS.positional
			| .mounts += [{destination: "/tmp", type: "tmpfs", source: "tmpfs",
				options: ["nosuid", "nodev", "mode=1777"]}]' "$@" <"$bundle/config.json" >"$cfg"
		cmd=("$HULL" --root "$work/hull-state" run -b "$bundle" -f "$cfg" "bench-$tag")
		;;
	sandbox) cmd=("$SBX" do --rootfs "$rootfs" -- "$@") ;;
	runsc)
		cmd=(runsc --root "$work/runsc-state" --platform=ptrace --network=none
			do -root "$rootfs" -quiet -- "$@")
		;;
	*) die "unknown runtime $rt" ;;
	esac
}

# launch RUNTIME ARGV...: runs ARGV under RUNTIME with its stdout in a new file,
# whose path is left in $last_out; stderr goes to a file beside it.
launch() {
	local rt=$1
	command_for "$@"
	last_out=$work/out/$rt-$BASHPID-$seq_no.out
	local err=$work/out/$rt-$BASHPID-$seq_no.err
	"${cmd[@]}" >"$last_out" 2>"$err" </dev/null || die "$rt failed: ${cmd[*]}: $(tail -5 "$err")"
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

# micro NAME ARGV...: runs ARGV $REPS times under each runtime, interleaved so
# that load from elsewhere on the host falls on all three alike, and stores in
# res[NAME,runtime] the median of the figure the program prints.
micro() {
	local name=$1 rt
	shift
	echo "sandbox-bench: $name" >&2
	for _ in $(seq "$REPS"); do
		for rt in "${runtimes[@]}"; do
			launch "$rt" "$@"
			awk 'NF >= 2 {print $2; exit}' "$last_out" >>"$work/$name-$rt.figures"
		done
	done
	for rt in "${runtimes[@]}"; do
		res[$name,$rt]=$(median <"$work/$name-$rt.figures")
	done
}

# startup RUNTIME: mean seconds from launch to exit of /bin/true.
startup() {
	local rt=$1
	command_for "$rt" /bin/true
	local line
	line=$(printf '%q ' "${cmd[@]}")
	# hull needs a fresh container id per run.
	[ "$rt" = hull ] && line="${line% }-\$RANDOM\$RANDOM"
	line="$line >/dev/null 2>&1 </dev/null"
	if command -v hyperfine >/dev/null; then
		hyperfine --style none --warmup 2 --runs "$N_START" --shell bash \
			--export-json "$work/hf-$rt.json" "$line" >/dev/null
		jq '.results[0].mean' "$work/hf-$rt.json"
	else
		local t0 t1
		t0=$(date +%s%N)
		for _ in $(seq "$N_START"); do bash -c "$line"; done
		t1=$(date +%s%N)
		awk -v d=$((t1 - t0)) -v n="$N_START" 'BEGIN {print d / n / 1e9}'
	fi
}

# peak RUNTIME CODE ARGV...: GNU time's maximum RSS in KiB of a run of ARGV,
# which must exit CODE.
peak() {
	local rt=$1 want=$2 rc=0
	shift 2
	command_for "$rt" "$@"
	/usr/bin/time -f %M -o "$work/time.out" "${cmd[@]}" >/dev/null 2>"$work/peak.err" </dev/null || rc=$?
	[ "$rc" -eq "$want" ] || die "$rt exited $rc (expected $want): ${cmd[*]}: $(tail -5 "$work/peak.err")"
	tail -1 "$work/time.out"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
runtimes=(hull sandbox runsc)
declare -A res
micro getpid /opt/bench/getpid "$N_GETPID"
micro openread /opt/bench/openread "$N_OPEN" /etc/passwd
micro forkexec /opt/bench/forkexec "$N_FORK" /bin/true
for rt in "${runtimes[@]}"; do
	echo "sandbox-bench: start-up and memory, $rt" >&2
	res[startup,$rt]=$(awk -v s="$(startup "$rt")" 'BEGIN {printf "%.1f", s * 1000}')
	res[rss_true,$rt]=$(peak "$rt" 0 /bin/true)
	res[rss_threads,$rt]=$(peak "$rt" 4 /opt/threads)
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }

rows=(
	"getpid|getpid latency (ns/call)"
	"openread|open+read+close of /etc/passwd (ns/round)"
	"forkexec|fork+execve+waitpid of /bin/true (µs/round)"
	"startup|start-up to exit of /bin/true (ms)"
	"rss_true|peak RSS, /bin/true (KiB)"
	"rss_threads|peak RSS, /opt/threads (KiB)"
)
table() {
	echo "| measure | hull | hull-sandbox | runsc (ptrace) | hull-sandbox / runsc | hull-sandbox / hull |"
	echo "|---|---:|---:|---:|---:|---:|"
	for row in "${rows[@]}"; do
		local key=${row%%|*} label=${row#*|}
		local h=${res[$key,hull]} s=${res[$key,sandbox]} r=${res[$key,runsc]}
		echo "| $label | $h | $s | $r | $(ratio "$s" "$r") | $(ratio "$s" "$h") |"
	done
}

{
	echo "# hull-sandbox side by side with hull and runsc"
	echo
	echo "Generated by \`conformance/sandbox-bench.sh$([ "$quick" -eq 1 ] && echo " --quick")\` on $(date -u +%Y-%m-%d)."
	echo "Host: $(nproc) CPUs, Linux $(uname -r), load average $load0 before and $(cut -d' ' -f1-3 /proc/loadavg) after the runs (other work on the host slows all three runtimes, not necessarily evenly)."
	echo "runsc: $(runsc --version 2>/dev/null | head -1), \`--platform=ptrace --network=none do\`."
	echo "Binaries: \`${HULL#"$repo"/}\`, \`${SBX#"$repo"/}\`$(case "$SBX" in */release/*) echo " (release: fat LTO)" ;; *) echo " (debug build: unoptimized, so the Sentry's figures are pessimistic)" ;; esac)."
	echo "Micro-benchmarks: median of $REPS runs, the three runtimes interleaved; each run does $N_GETPID getpid, $N_OPEN open+read+close, $N_FORK fork+exec+wait."
	echo "Start-up: mean of $N_START runs ($(command -v hyperfine >/dev/null && echo "hyperfine" || echo "a loop timed with date +%s%N"), each launched through bash)."
	echo
	table
	echo
	echo "A ratio below 1 means hull-sandbox is faster or smaller. The stage-1 goal is"
	echo "hull-sandbox / runsc ≤ 1 in every row."
	echo
	echo "What the rows cover:"
	echo "- getpid, openread and forkexec are timed inside the workload with CLOCK_MONOTONIC,"
	echo "  so they exclude start-up. Under hull they are native Linux in a container."
	echo "- Start-up includes the launcher: \`hull run\` creating and deleting a container,"
	echo "  \`hull-sandbox do\` starting the Sentry and gofer, \`runsc do\` its sandbox and gofer."
	echo "- Peak RSS is GNU time's maximum resident set size: the largest single process in the"
	echo "  tree the launcher waits for, not the sum of the processes. For runsc the Sentry and"
	echo "  gofer count only if runsc reaps them; memory of the Sentry's memfd that no process"
	echo "  maps is not counted for either sandbox."
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
