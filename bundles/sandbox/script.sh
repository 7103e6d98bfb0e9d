#!/bin/sh
# Stage-1 busybox sh workload for hull-sandbox (issue 6): pipes, redirection,
# subshells, ls, cat, sleep, echo, mkdir, rm, wc, sort, environment variables,
# a file written and read back, a trapped signal, and exit codes.
#
# usage: script.sh [section...]   (default: every section)
# sections: env redirect pipes subshells files functions sleep traps
#
# The output is deterministic (no pids, times or host facts), so the
# differential suite compares a native run with a sandboxed one byte for byte.
# It exits 3 after the last section; a failing section makes it exit 1.
set -u

work=/tmp/script-work

section_env() {
	GREETING=hello
	export GREETING
	sh -c 'echo "child sees GREETING=$GREETING"'
	unset GREETING
	echo "after unset: ${GREETING:-unset}"
	NAME=world sh -c 'echo "one-shot NAME=$NAME"'
	echo "PATH=$PATH"
	env | grep -c '^PATH='
}

section_redirect() {
	echo "line one" >"$work/file.txt"
	echo "line two" >>"$work/file.txt"
	printf '%s\n' charlie alpha bravo >>"$work/file.txt"
	ls /no/such/path 2>"$work/err.txt" >/dev/null
	echo "ls of a missing path exited $?"
	wc -l <"$work/err.txt" | sed 's/ //g'
	cat <<HEREDOC >"$work/here.txt"
here document for $(echo substituted)
HEREDOC
	cat "$work/here.txt"
	echo "file has $(wc -l <"$work/file.txt") lines and $(wc -c <"$work/file.txt") bytes"
	while read -r line; do
		echo "read back: $line"
	done <"$work/file.txt"
	exec 3>"$work/fd3.txt"
	echo "through fd 3" >&3
	exec 3>&-
	cat "$work/fd3.txt"
}

section_pipes() {
	printf '%s\n' charlie alpha bravo delta | sort | head -3
	printf '%s\n' 3 1 2 3 1 3 | sort -n | uniq -c | sed 's/^ *//'
	seq 1 1000 | grep 7 | wc -l
	echo "pipe status: $(false | true; echo $?)"
}

section_subshells() {
	x=outer
	(x=inner; cd "$work" && echo "in subshell: x=$x dir=$(pwd)")
	echo "after subshell: x=$x dir=$(pwd)"
	(exit 7)
	echo "subshell exit code: $?"
	result=$( (echo nested; echo subshell) | tr a-z A-Z)
	echo "$result"
}

section_files() {
	mkdir -p "$work/sub/deeper"
	echo b >"$work/sub/b"
	touch "$work/sub/a" "$work/sub/deeper/c"
	ls "$work/sub"
	ls -R "$work/sub" | grep -c .
	rm "$work/sub/a"
	rm -r "$work/sub/deeper"
	ls "$work/sub"
	[ -e "$work/sub/a" ] || echo "a removed"
	rmdir "$work/sub" 2>/dev/null || echo "rmdir of a non-empty dir failed"
}

check() {
	[ "$1" -gt 10 ] && return 0
	return 4
}

section_functions() {
	check 42 && echo "42 > 10"
	check 5 || echo "check 5 returned $?"
	false || echo "false returned 1"
	echo "arithmetic: $((6 * 7)) $((100 / 7)) $((100 % 7))"
}

section_sleep() {
	sleep 0.1
	echo "foreground sleep exit code: $?"
	sleep 0.1 &
	wait $!
	echo "background sleep exit code: $?"
}

section_traps() {
	trap 'echo "trapped USR1"' USR1
	kill -USR1 $$
	trap - USR1
	(
		trap 'echo "subshell TERM handler"; exit 5' TERM
		sh -c 'kill -TERM $PPID'
		echo "not reached"
	)
	echo "subshell killed itself: exit code $?"
}

[ $# -gt 0 ] || set -- env redirect pipes subshells files functions sleep traps
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"; echo "exit trap cleaned up"' EXIT
for s in "$@"; do
	echo "== $s"
	"section_$s" || {
		echo "section $s failed"
		exit 1
	}
done
exit 3
