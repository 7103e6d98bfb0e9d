#!/bin/sh
# Assemble an OCI bundle (runtime-spec 1.2.0) from Debian's busybox-static.
#
# usage: build.sh [--checker <path>] <outdir> [args...]
#
#   <outdir>/rootfs       bin/busybox, one symlink per applet, the usual empty
#                         dirs, a minimal etc/passwd and etc/group
#   <outdir>/config.json  equivalent to `runc spec` output, except
#                         process.terminal=false, hostname "hull",
#                         root.readonly=true and process.args = [args...]
#
# --checker <path>  copy a static checker binary into the rootfs as /checker.
#
# Idempotent: an existing <outdir> is removed first.
# Environment: HULL_BUSYBOX overrides the busybox binary (default /bin/busybox).
set -eu

BUSYBOX=${HULL_BUSYBOX:-/bin/busybox}
DEFAULT_CMD='echo "hello from hull: $(hostname), pid $$, uid $(id -u)"'

die() {
	echo "build.sh: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 [--checker <path>] <outdir> [args...]" >&2
	exit 2
}

checker=""
while [ $# -gt 0 ]; do
	case "$1" in
	--checker)
		[ $# -ge 2 ] || usage
		checker=$2
		shift 2
		;;
	--checker=*)
		checker=${1#--checker=}
		shift
		;;
	-h | --help) usage ;;
	--)
		shift
		break
		;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
outdir=$1
shift

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install the busybox-static package (apt-get install busybox-static)"
if command -v file >/dev/null 2>&1; then
	file -L "$BUSYBOX" | grep -q 'statically linked' ||
		die "$BUSYBOX is not statically linked: install busybox-static (not busybox)"
fi
command -v jq >/dev/null 2>&1 || die "jq not found: install the jq package"
if [ -n "$checker" ]; then
	[ -f "$checker" ] || die "checker binary $checker does not exist"
fi

case "$outdir" in
"" | / | /.) die "refusing to use '$outdir' as the output directory" ;;
esac
rm -rf -- "$outdir"
mkdir -p -- "$outdir/rootfs"
rootfs=$outdir/rootfs

# --- rootfs -------------------------------------------------------------------
for d in bin proc sys dev tmp etc root; do
	mkdir -p "$rootfs/$d"
done
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
cp "$BUSYBOX" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
	case "$applet" in
	busybox | *"/"* | "") continue ;;
	esac
	ln -sf busybox "$rootfs/bin/$applet"
done

cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP

if [ -n "$checker" ]; then
	cp "$checker" "$rootfs/checker"
	chmod 0755 "$rootfs/checker"
fi

# --- config.json --------------------------------------------------------------
if [ $# -eq 0 ]; then
	set -- sh -c "$DEFAULT_CMD"
fi
args_json=$(jq -n '$ARGS.positional' --args -- "$@")

jq --argjson args "$args_json" '.process.args = $args' >"$outdir/config.json" <<'CONFIG'
{
	"ociVersion": "1.2.0",
	"process": {
		"terminal": false,
		"user": { "uid": 0, "gid": 0 },
		"args": [],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
			"effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
			"permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
			"ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
		},
		"rlimits": [
			{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }
		],
		"noNewPrivileges": true
	},
	"root": { "path": "rootfs", "readonly": true },
	"hostname": "hull",
	"mounts": [
		{ "destination": "/proc", "type": "proc", "source": "proc" },
		{
			"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
			"options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
		},
		{
			"destination": "/dev/pts", "type": "devpts", "source": "devpts",
			"options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
		},
		{
			"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
			"options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
		},
		{
			"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
			"options": ["nosuid", "noexec", "nodev"]
		},
		{
			"destination": "/sys", "type": "sysfs", "source": "sysfs",
			"options": ["nosuid", "noexec", "nodev", "ro"]
		},
		{
			"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
			"options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
		}
	],
	"linux": {
		"resources": {
			"devices": [ { "allow": false, "access": "rwm" } ]
		},
		"namespaces": [
			{ "type": "pid" },
			{ "type": "network" },
			{ "type": "ipc" },
			{ "type": "uts" },
			{ "type": "mount" }
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}
CONFIG

echo "bundle ready: $outdir" >&2
