#!/usr/bin/env bash
# Builds the images the CRI tests pull (issue 4's, and critest's from cri-tools v1.37) from
# Debian packages on this machine, and pushes them to a local registry under the paths of
# their original names, so that a registry mirror (host -> http://127.0.0.1:5000, path kept)
# serves them under the names the tests use:
#   registry.k8s.io/e2e-test-images/busybox:1.29-2  ->  127.0.0.1:5000/e2e-test-images/busybox:1.29-2
#   gcr.io/k8s-staging-cri-tools/test-image-1       ->  127.0.0.1:5000/k8s-staging-cri-tools/test-image-1
#   registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9  ->  127.0.0.1:5000/pause:3.9 (one manifest)
#
# Usage: images.sh [--registry 127.0.0.1:5000] [--work DIR] [--checker PATH] [--check] [--big]
#   --big      also push docker.io/hull/bench-big:1, four layers of this host's files
#              (about 330 MB unpacked) for the pull benchmark (conformance/bench/cri.sh)
#   --work     build directory (default conformance/work/images)
#   --checker  also push hull/checker:latest, the busybox image plus PATH as /checker
#   --check    before pushing, run nginx, httpd, nonewprivs and pause from the built root
#              filesystems (unshare + chroot) and check that they behave
#
# Images are reproducible: layers are tar archives with sorted names, fixed mtimes and numeric
# owners, gzipped without names or times, and the manifests are written here byte for byte,
# so an unchanged input gives the same digests on every run. A tag that already holds the
# same manifest digest is not pushed again. The registry must be running
# (conformance/registry.sh start).
set -euo pipefail
umask 022

here=$(cd "$(dirname "$0")" && pwd)
registry=127.0.0.1:5000
work=$here/work/images
checker=""
check=0
big=0
while [ $# -gt 0 ]; do
    case $1 in
        --registry) registry=${2:?--registry needs host:port}; shift 2 ;;
        --work) work=${2:?--work needs a directory}; shift 2 ;;
        --checker) checker=${2:?--checker needs a path}; shift 2 ;;
        --check) check=1; shift ;;
        --big) big=1; shift ;;
        -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "images.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { echo "images.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in skopeo jq curl gcc tar gzip sha256sum apt-get dpkg-deb nginx ldd pgrep ipcs; do
    command -v "$tool" >/dev/null || die "$tool is required (scripts/deps.sh)"
done
if [ -n "$checker" ]; then
    [ -x "$checker" ] || die "--checker $checker is not an executable file"
    # The image has no shared libraries for it.
    ! ldd "$checker" 2>&1 | grep -q '=>' || die "--checker $checker is dynamically linked; give a static build"
fi
[ -f /etc/nginx/mime.types ] || die "/etc/nginx/mime.types missing (Debian's nginx-common)"
curl -fsS -o /dev/null --max-time 5 "http://$registry/v2/" ||
    die "no registry answers on http://$registry/v2/ (conformance/registry.sh start)"

started=$(date +%s%N)
mtime='2026-01-01 00:00:00Z'
created='2026-01-01T00:00:00Z'
path_env='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
mkdir -p "$work/blobs" "$work/src"
stage=$work/stage
rm -rf "$stage" "$work/dirs"
mkdir -p "$stage" "$work/dirs"

# --- layers -----------------------------------------------------------------------------

declare -A layer_digest layer_diff layer_size
# Packs directory $stage/<name> as a gzipped layer; records its digest, diff id and size.
make_layer() { # name
    local name=$1 tmp=$work/layer.tar diff digest
    tar --format=gnu --sort=name --numeric-owner --mtime="$mtime" \
        -C "$stage/$name" -cf "$tmp" .
    diff=$(sha256sum "$tmp" | cut -d' ' -f1)
    gzip -n -6 -c "$tmp" >"$tmp.gz"
    digest=$(sha256sum "$tmp.gz" | cut -d' ' -f1)
    layer_size[$name]=$(stat -c %s "$tmp.gz")
    mv -f "$tmp.gz" "$work/blobs/$digest"
    rm -f "$tmp"
    layer_digest[$name]=sha256:$digest
    layer_diff[$name]=sha256:$diff
}

new_root() { rm -rf "${stage:?}/$1"; mkdir -p "$stage/$1"; echo "$stage/$1"; }

# Debian's dynamically linked busybox (package `busybox`, extracted, not installed: it
# conflicts with busybox-static), cached in $work/debs. Prints the binary's path.
busybox_dynamic() {
    local debs=$work/debs deb
    mkdir -p "$debs"
    deb=$(ls "$debs"/busybox_*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        (cd "$debs" && apt-get download busybox >&2) || die "apt-get download busybox failed"
        deb=$(ls "$debs"/busybox_*.deb | head -n1)
    fi
    rm -rf "$debs/x" && dpkg-deb -x "$deb" "$debs/x" || die "dpkg-deb -x $deb failed"
    [ -x "$debs/x/bin/busybox" ] || die "$deb has no bin/busybox"
    echo "$debs/x/bin/busybox"
}

# busybox with one hard link per applet at its usual path, and the users the tests name.
# Debian's dynamic busybox, not busybox-static: the static build runs applets inside the
# shell (FEATURE_SH_STANDALONE), so `sh -c ls` would not exec /bin/ls, and critest's
# MaskedPaths test (which masks /bin/ls and expects "/bin/sh: ls: Permission denied")
# would see ls succeed. The upstream busybox image execs /bin/ls like this one does.
layer_base() {
    local r bb
    r=$(new_root base)
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,tmp,var/run,var/log,var/tmp,proc,sys,dev,run}
    chmod 1777 "$r/tmp" "$r/var/tmp"
    chmod 0700 "$r/root"
    bb=$(busybox_dynamic)
    cp "$bb" "$r/bin/busybox"
    copy_libs "$r" "$bb"
    # Hard links, as busybox images have: critest masks /bin/ls, and masking a symlink to
    # /bin/busybox would mask the shell too.
    local applet
    while read -r applet; do
        [ "$applet" = bin/busybox ] || ln -f "$r/bin/busybox" "$r/$applet"
    done < <("$bb" --list-full)
    # Debian's busybox builds have no pgrep or ipcs applet, which critest calls ("execSync
    # with timeout", HostIpc): procps' and util-linux's, with their libraries.
    copy_with_libs "$r" "$(command -v pgrep)"
    copy_with_libs "$r" "$(command -v ipcs)"
    cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$r/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65533:
nobody:x:65534:
EOF
    chown -R 0:0 "$r"
    make_layer base
}

# Copies a dynamically linked program and every library ldd lists, at the same paths.
copy_with_libs() { # root program
    mkdir -p "$1$(dirname "$2")"
    cp "$2" "$1$2"
    copy_libs "$1" "$2"
}

# Copies every library ldd lists for a program, at the same paths.
copy_libs() { # root program
    local r=$1 prog=$2 lib
    for lib in $(ldd "$prog" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
    done
}

# Debian's nginx, its libraries, mime.types, a page, and the paths it writes at start.
layer_nginx() {
    local r
    r=$(new_root nginx)
    copy_with_libs "$r" /usr/sbin/nginx
    mkdir -p "$r/etc/nginx" "$r/usr/share/nginx/html" "$r/var/lib/nginx" "$r/var/log/nginx"
    cp /etc/nginx/mime.types "$r/etc/nginx/mime.types"
    echo '<html><body><h1>Welcome to nginx!</h1></body></html>' >"$r/usr/share/nginx/html/index.html"
    # Debian's build opens /var/log/nginx/error.log before it reads the configuration.
    ln -s /dev/stderr "$r/var/log/nginx/error.log"
    ln -s /dev/stdout "$r/var/log/nginx/access.log"
    chown -R 0:0 "$r"
    make_layer nginx
}

layer_nginx_conf() { # name port
    local r
    r=$(new_root "$1")
    mkdir -p "$r/etc/nginx"
    cat >"$r/etc/nginx/nginx.conf" <<EOF
# hull test image: nginx in the foreground, logs to the container's stdout and stderr.
user www-data;
worker_processes 1;
pid /var/run/nginx.pid;
daemon off;
error_log stderr notice;
events {
    worker_connections 256;
}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    server {
        listen $2;
        server_name localhost;
        location / {
            root /usr/share/nginx/html;
            index index.html;
        }
    }
}
EOF
    chown -R 0:0 "$r"
    make_layer "$1"
}

layer_httpd() {
    local r
    r=$(new_root httpd)
    mkdir -p "$r/var/www"
    echo '<html><body><h1>It works!</h1></body></html>' >"$r/var/www/index.html"
    chown -R 0:0 "$r"
    make_layer httpd
}

# A static C program built here; the sources are written by this script.
build_static() { # name source-text
    local src=$work/src/$1.c
    printf '%s\n' "$2" >"$src"
    gcc -static -Os -s -o "$work/src/$1" "$src"
}

layer_nonewprivs() {
    local r
    build_static nnp '#include <stdio.h>
#include <unistd.h>
/* Setuid root: prints the effective uid it ends up with. With no_new_privs set,
 * exec does not honour the setuid bit and the caller'"'"'s uid is printed. */
int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}'
    r=$(new_root nonewprivs)
    mkdir -p "$r/usr/local/bin"
    cp "$work/src/nnp" "$r/usr/local/bin/nnp"
    chown -R 0:0 "$r"
    chmod 4755 "$r/usr/local/bin/nnp"
    make_layer nonewprivs
}

layer_pause() {
    local r
    build_static pause '#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* Holds a pod'"'"'s namespaces: sleeps until SIGINT or SIGTERM, and reaps children when it
 * is PID 1 of a shared PID namespace. */
static void on_term(int sig) { (void)sig; _exit(0); }
static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;)
        pause();
}'
    r=$(new_root pause)
    cp "$work/src/pause" "$r/pause"
    chown -R 0:0 "$r"
    make_layer pause
}

# An empty file /<name>, as cri-tools' images/image-test Dockerfile ADDs one.
layer_file() { # name
    local r
    r=$(new_root "file-$1")
    : >"$r/$1"
    chown 0:0 "$r/$1"
    make_layer "file-$1"
}

# What `adduser -u 1000 -D default-user; addgroup -g 50000 group-defined-in-image;
# addgroup default-user group-defined-in-image` does to the base image.
layer_predefined_group() {
    local r
    r=$(new_root predefined-group)
    mkdir -p "$r/etc" "$r/home/default-user"
    cp "$stage/base/etc/passwd" "$stage/base/etc/group" "$r/etc/"
    echo 'default-user:x:1000:1000::/home/default-user:/bin/sh' >>"$r/etc/passwd"
    printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >>"$r/etc/group"
    chown -R 0:0 "$r"
    chown 1000:1000 "$r/home/default-user"
    make_layer predefined-group
}

layer_checker() {
    local r
    r=$(new_root checker)
    cp "$checker" "$r/checker"
    chown 0:0 "$r/checker"
    chmod 0755 "$r/checker"
    make_layer checker
}

# --- images -----------------------------------------------------------------------------

# Writes blob $2 (text) to the blob cache; prints its digest.
put_blob() {
    local digest
    digest=$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)
    printf '%s' "$1" >"$work/blobs/$digest"
    echo "sha256:$digest"
}

# Prints an image config: $1 is the JSON of its "config" object, then layer names.
image_config() {
    local cfg=$1 diffs history
    shift
    diffs=$(for l in "$@"; do echo "${layer_diff[$l]}"; done | jq -R . | jq -sc .)
    history=$(for l in "$@"; do echo "$l"; done |
        jq -R --arg c "$created" '{created: $c, created_by: ("conformance/images.sh: " + .)}' | jq -sc .)
    jq -cn --arg c "$created" --argjson cfg "$cfg" --argjson d "$diffs" --argjson h "$history" \
        '{architecture: "amd64", os: "linux", created: $c, config: $cfg,
          rootfs: {type: "layers", diff_ids: $d}, history: $h}'
}

# Prints a manifest of format docker|oci for config digest $2 (size $3) and layers.
image_manifest() { # format config-digest config-size layers...
    local fmt=$1 cd=$2 cs=$3 mt ct lt layers
    shift 3
    if [ "$fmt" = docker ]; then
        mt=application/vnd.docker.distribution.manifest.v2+json
        ct=application/vnd.docker.container.image.v1+json
        lt=application/vnd.docker.image.rootfs.diff.tar.gzip
    else
        mt=application/vnd.oci.image.manifest.v1+json
        ct=application/vnd.oci.image.config.v1+json
        lt=application/vnd.oci.image.layer.v1.tar+gzip
    fi
    layers=$(for l in "$@"; do
        jq -cn --arg t "$lt" --arg d "${layer_digest[$l]}" --argjson s "${layer_size[$l]}" \
            '{mediaType: $t, size: $s, digest: $d}'
    done | jq -sc .)
    jq -cn --arg mt "$mt" --arg ct "$ct" --arg cd "$cd" --argjson cs "$cs" --argjson l "$layers" \
        '{schemaVersion: 2, mediaType: $mt, config: {mediaType: $ct, size: $cs, digest: $cd}, layers: $l}'
}

declare -A image_digest image_id image_dir
# Builds image <key> as a skopeo dir: layout. format: docker (a Docker schema 2 manifest) or
# index (an OCI index with one linux/amd64 OCI manifest, as multi-arch images are published).
make_image() { # key format config-json layers...
    local key=$1 fmt=$2 cfg=$3 config cd cs manifest md dir l
    shift 3
    config=$(image_config "$cfg" "$@")
    cd=$(put_blob "$config")
    cs=${#config}
    dir=$work/dirs/$key
    mkdir -p "$dir"
    echo 'Directory Transport Version: 1.1' >"$dir/version"
    for l in "$@"; do ln -f "$work/blobs/${layer_digest[$l]#sha256:}" "$dir/"; done
    ln -f "$work/blobs/${cd#sha256:}" "$dir/"
    if [ "$fmt" = docker ]; then
        manifest=$(image_manifest docker "$cd" "$cs" "$@")
        printf '%s' "$manifest" >"$dir/manifest.json"
        md=$(put_blob "$manifest")
    else
        manifest=$(image_manifest oci "$cd" "$cs" "$@")
        local inner index
        inner=$(put_blob "$manifest")
        printf '%s' "$manifest" >"$dir/${inner#sha256:}.manifest.json"
        index=$(jq -cn --arg d "$inner" --argjson s "${#manifest}" '{schemaVersion: 2,
            mediaType: "application/vnd.oci.image.index.v1+json",
            manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", size: $s,
                         digest: $d, platform: {architecture: "amd64", os: "linux"}}]}')
        printf '%s' "$index" >"$dir/manifest.json"
        md=$(put_blob "$index")
    fi
    image_digest[$key]=$md
    image_id[$key]=$cd
    image_dir[$key]=$dir
}

t0=$(date +%s%N)
layer_base
layer_nginx
layer_nginx_conf nginx-conf-80 80
layer_nginx_conf nginx-conf-12003 12003
layer_httpd
layer_nonewprivs
layer_pause
for f in test-image-1 test-image-2 test-image-3 test-image-latest same-image test all; do layer_file "$f"; done
layer_predefined_group
[ -z "$checker" ] || layer_checker
t1=$(date +%s%N)
log "layers built in $(((t1 - t0) / 1000000)) ms"

env_json=$(jq -cn --arg p "$path_env" '[$p]')
cfg() { jq -cn --argjson env "$env_json" "{Env: \$env} + $1"; }

make_image busybox docker "$(cfg '{Cmd: ["sh"]}')" base
make_image pause index "$(cfg '{Entrypoint: ["/pause"], User: "65535:65535", WorkingDir: "/"}')" pause
nginx_cfg='{Cmd: ["/usr/sbin/nginx"], ExposedPorts: {"80/tcp": {}}, StopSignal: "SIGQUIT"}'
make_image nginx docker "$(cfg "$nginx_cfg")" base nginx nginx-conf-80
make_image hostnet-nginx docker \
    "$(cfg '{Cmd: ["/usr/sbin/nginx"], ExposedPorts: {"12003/tcp": {}}, StopSignal: "SIGQUIT"}')" \
    base nginx nginx-conf-12003
make_image httpd docker "$(cfg '{Cmd: ["sh", "-c", "echo \"httpd: busybox httpd serving /var/www on :80\"; exec httpd -f -v -p 80 -h /var/www"], ExposedPorts: {"80/tcp": {}}}')" base httpd
make_image nonewprivs docker "$(cfg '{Entrypoint: ["/usr/local/bin/nnp"]}')" base nonewprivs
for f in test-image-1 test-image-2 test-image-3 test-image-latest same-image test all; do
    make_image "file-$f" index "$(cfg '{Cmd: ["sh"]}')" base "file-$f"
done
make_image user-uid index "$(cfg '{Cmd: ["sh"], User: "1002"}')" base
make_image user-username index "$(cfg '{Cmd: ["sh"], User: "www-data"}')" base
make_image user-uid-group index "$(cfg '{Cmd: ["sh"], User: "1003:1004"}')" base
make_image user-username-group index "$(cfg '{Cmd: ["sh"], User: "www-data:1004"}')" base
make_image predefined-group index "$(cfg '{Cmd: ["sh"], User: "1000"}')" base predefined-group
[ -z "$checker" ] || make_image checker docker "$(cfg '{Entrypoint: ["/checker"]}')" base checker
if [ $big = 1 ]; then
    # Real files rather than random bytes, so compression behaves as with real images.
    i=0
    for src in /usr/lib/gcc /usr/libexec /usr/share/perl /usr/share/locale; do
        i=$((i + 1))
        r=$(new_root "big-$i")
        cp -a "$src" "$r/"
        make_layer "big-$i"
    done
    make_image bench-big index "$(cfg '{Cmd: ["sh"]}')" base big-1 big-2 big-3 big-4
fi

# Original name -> image key. The registry path is the name without its registry host.
e2e=registry.k8s.io/e2e-test-images
cri=gcr.io/k8s-staging-cri-tools
pushes=(
    "$e2e/busybox:1.29-2 busybox"
    "registry.k8s.io/pause:3.9 pause"
    "k8s.gcr.io/pause:3.9 pause"
    "$e2e/nginx:1.14-2 nginx"
    "$e2e/httpd:2.4.39-4 httpd"
    "$e2e/nonewprivs:1.3 nonewprivs"
    "$cri/hostnet-nginx-amd64:latest hostnet-nginx"
    "$cri/test-image-1:latest file-test-image-1"
    "$cri/test-image-2:latest file-test-image-2"
    "$cri/test-image-3:latest file-test-image-3"
    "$cri/test-image-latest:latest file-test-image-latest"
    "$cri/test-image-tags:1 file-same-image"
    "$cri/test-image-tags:2 file-same-image"
    "$cri/test-image-tags:3 file-same-image"
    "$cri/test-image-tag:test file-test"
    "$cri/test-image-tag:all file-all"
    "$cri/test-image-user-uid:latest user-uid"
    "$cri/test-image-user-username:latest user-username"
    "$cri/test-image-user-uid-group:latest user-uid-group"
    "$cri/test-image-user-username-group:latest user-username-group"
    "$cri/test-image-predefined-group:latest predefined-group"
)
[ -z "$checker" ] || pushes+=("docker.io/hull/checker:latest checker")
[ $big = 0 ] || pushes+=("docker.io/hull/bench-big:1 bench-big")

# --- smoke checks of the root filesystems (--check) --------------------------------------

# Merges layers into one directory, as an overlay would (no whiteouts are used here).
flatten() { # dir layers...
    local d=$1 l
    shift
    rm -rf "$d" && mkdir -p "$d"
    for l in "$@"; do cp -a "$stage/$l/." "$d/"; done
    mkdir -p "$d/proc" "$d/dev"
}

# Runs a command in a root filesystem with new PID, mount and network namespaces.
in_root() { # dir command...
    local d=$1
    shift
    unshare --pid --fork --mount --net --uts sh -c \
        'ip link set lo up && mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"' \
        "$d" "$@"
}

smoke_checks() {
    local d=$work/check out
    flatten "$d" base nginx nginx-conf-80
    out=$(in_root "$d" sh -c '/usr/sbin/nginx & for i in $(seq 50); do
            wget -q -O - http://127.0.0.1:80/ 2>/dev/null && break; sleep 0.1; done
            echo "pid:$(cat /var/run/nginx.pid)"; echo "ps:$(ps -o user,comm | grep nginx | sort -u | tr "\n" " ")"
            kill -QUIT $(cat /var/run/nginx.pid); wait' 2>&1) || true
    grep -q 'Welcome to nginx' <<<"$out" || die "check nginx: no page on :80: $out"
    grep -q '^pid:[0-9]' <<<"$out" || die "check nginx: no /var/run/nginx.pid: $out"
    grep -q 'www-data' <<<"$out" || die "check nginx: no worker running as www-data: $out"
    flatten "$d" base httpd
    out=$(in_root "$d" sh -c 'httpd -f -v -p 80 -h /var/www & sleep 0.3
            wget -S -O - http://127.0.0.1:80/ 2>&1; kill $!' 2>&1) || true
    grep -q '200 OK' <<<"$out" && grep -q 'It works' <<<"$out" ||
        die "check httpd: no 200 on :80: $out"
    flatten "$d" base nonewprivs
    # chroot drops to uid 1000 and execs the setuid program; setpriv sets no_new_privs first.
    out=$(chroot --userspec=1000:1000 "$d" /usr/local/bin/nnp 2>&1) || true
    [ "$out" = "Effective uid: 0" ] || die "check nonewprivs (setuid): got '$out'"
    out=$(setpriv --no-new-privs chroot --userspec=1000:1000 "$d" /usr/local/bin/nnp 2>&1) || true
    [ "$out" = "Effective uid: 1000" ] || die "check nonewprivs (no_new_privs): got '$out'"
    flatten "$d" pause
    # pause must still run after 0.5 s, then exit 0 on SIGTERM (timeout returns its status).
    local t rc=0
    t=$(date +%s%N)
    timeout --preserve-status -s TERM 0.5 chroot "$d" /pause || rc=$?
    t=$((($(date +%s%N) - t) / 1000000))
    [ $rc = 0 ] && [ $t -ge 450 ] || die "check pause: exit status $rc after $t ms (want 0 after 500 ms)"
    rm -rf "$d"
    log "checks passed: nginx serves :80 and writes its pid file, httpd answers 200, nnp honours no_new_privs, pause exits 0 on SIGTERM"
}
[ $check = 0 ] || smoke_checks

# --- push ---------------------------------------------------------------------------------

accept='application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json'
accept+=',application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json'
remote_digest() { # path:tag
    local repo=${1%:*} tag=${1##*:}
    curl -fsS -I --max-time 10 -H "Accept: $accept" "http://$registry/v2/$repo/manifests/$tag" 2>/dev/null |
        tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}'
}

rows=()
for entry in "${pushes[@]}"; do
    name=${entry% *}
    key=${entry#* }
    path=${name#*/}
    want=${image_digest[$key]}
    if [ "$(remote_digest "$path")" = "$want" ]; then
        state=present
    else
        skopeo --insecure-policy copy --quiet --all --preserve-digests --dest-tls-verify=false \
            "dir:${image_dir[$key]}" "docker://$registry/$path" ||
            die "skopeo copy of $name to $registry/$path failed"
        got=$(remote_digest "$path")
        [ "$got" = "$want" ] || die "$registry/$path has digest '$got' after the push, expected $want"
        state=pushed
    fi
    rows+=("$name|$registry/$path|$want|${image_id[$key]}|$state")
done

printf "%-67s %-8s %-72s %s\n" "IMAGE (as the tests name it)" STATE "MANIFEST DIGEST" "IMAGE ID (config digest)"
for row in "${rows[@]}"; do
    IFS='|' read -r name _ md id state <<<"$row"
    printf "%-67s %-8s %-72s %s\n" "$name" "$state" "$md" "$id"
done
printf '%s\n' "${rows[@]}" | awk -F'|' '{print $1 "\t" $2 "\t" $3 "\t" $4}' >"$work/pushed.tsv"
rm -rf "$stage" "$work/dirs"
log "${#rows[@]} tags in $registry in $((($(date +%s%N) - started) / 1000000)) ms; list in $work/pushed.tsv"
