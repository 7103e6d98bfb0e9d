#!/usr/bin/env bash
# Builds the Go tools the CRI tests need, from their modules on the Go module proxy:
#   crictl  sigs.k8s.io/cri-tools/cmd/crictl       (CRITOOLS_VERSION, default v1.37.0)
#   critest sigs.k8s.io/cri-tools/cmd/critest      (a ginkgo suite: `go test -c`)
#   kubelet k8s.io/kubernetes/cmd/kubelet          (KUBE_VERSION, default the newest v1.36.x)
# Usage: tools.sh crictl|critest|kubelet... [--out DIR]
# Each binary is written as DIR/<tool>-<version> with a DIR/<tool> symlink to it; a binary
# already there for that version is not rebuilt. DIR defaults to conformance/work/bin.
# Builds run under `nice -n 10`: the machine is shared with Rust builds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$here/work/bin
build_root=$here/work/build
tools=()
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        crictl | critest | kubelet) tools+=("$1"); shift ;;
        -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "tools.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ ${#tools[@]} -gt 0 ] || { echo "usage: tools.sh crictl|critest|kubelet... [--out DIR]" >&2; exit 2; }
command -v go >/dev/null || { echo "tools.sh: go is required (scripts/deps.sh)" >&2; exit 1; }
mkdir -p "$out" "$build_root"
out=$(cd "$out" && pwd)

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
critools_version=${CRITOOLS_VERSION:-v1.37.0}

log() { echo "tools.sh: $*" >&2; }

# The newest v1.36 patch release the proxy serves.
kube_version() {
    if [ -n "${KUBE_VERSION:-}" ]; then echo "$KUBE_VERSION"; return; fi
    go list -m -versions k8s.io/kubernetes | tr ' ' '\n' | grep -E '^v1\.36\.[0-9]+$' |
        sort -t. -k3,3n | tail -1
}

# Copies a module from the module cache to a writable directory (the cache is read-only).
module_copy() { # module@version dest
    local dir
    dir=$(go mod download -json "$1" | jq -r .Dir)
    [ -d "$dir" ] || { log "go mod download $1 gave no directory"; return 1; }
    rm -rf "$2"
    cp -r "$dir" "$2"
    chmod -R u+w "$2"
}

# Installs $1 (a built file) as $out/<tool>-<version> and points $out/<tool> at it.
install_tool() { # built tool version
    mv -f "$1" "$out/$2-$3"
    ln -sfn "$2-$3" "$out/$2"
}

timed() { # tool version command...
    local tool=$1 version=$2 start end
    shift 2
    start=$(date +%s)
    "$@"
    end=$(date +%s)
    log "built $tool $version in $((end - start)) s -> $out/$tool-$version"
    echo "$(date -u +%FT%TZ) $tool $version $((end - start))s" >>"$out/build-times.log"
}

build_crictl() {
    local tmp=$build_root/crictl
    rm -rf "$tmp" && mkdir -p "$tmp"
    # The module has no replace directives, so `go install mod@version` builds it as released.
    GOBIN=$tmp nice -n 10 go install -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$critools_version" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$critools_version"
    install_tool "$tmp/crictl" crictl "$critools_version"
}

build_critest() {
    local src=$build_root/cri-tools-$critools_version
    module_copy "sigs.k8s.io/cri-tools@$critools_version" "$src"
    # The module zip carries vendor/modules.txt but not the vendored packages: module mode.
    (cd "$src" && nice -n 10 go test -c -mod=mod -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$critools_version" \
        -o "$build_root/critest.new" ./cmd/critest)
    install_tool "$build_root/critest.new" critest "$critools_version"
}

# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...) with local
# paths that its module zip does not carry. A wrapper module replaces each of them with the
# published k8s.io/X v0.<minor>.<patch> instead; the list comes from kubernetes' own go.mod.
build_kubelet() {
    local version=$1 staging=v0.${1#v1.} dir=$build_root/kubelet-$1 gomod
    rm -rf "$dir" && mkdir -p "$dir"
    gomod=$(go mod download -json "k8s.io/kubernetes@$version" | jq -r .GoMod)
    {
        echo "module hull.test/kubelet-build"
        echo
        awk '/^go [0-9]/ {print; exit}' "$gomod"
        echo
        echo "require k8s.io/kubernetes $version"
        echo
        echo "replace ("
        awk '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s '"$staging"'\n", $1, $1}' "$gomod"
        echo ")"
    } >"$dir/go.mod"
    grep -q 'k8s.io/cri-api =>' "$dir/go.mod" || { log "no staging replaces found in $gomod"; return 1; }
    local major=${version#v} minor
    minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
    local pkg=k8s.io/component-base/version
    (cd "$dir" && nice -n 10 go build -mod=mod -trimpath -o kubelet \
        -ldflags "-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
        k8s.io/kubernetes/cmd/kubelet)
    install_tool "$dir/kubelet" kubelet "$version"
}

for tool in "${tools[@]}"; do
    case $tool in
        crictl | critest) version=$critools_version ;;
        kubelet) version=$(kube_version); [ -n "$version" ] || { log "no v1.36.x of k8s.io/kubernetes on the proxy"; exit 1; } ;;
    esac
    if [ -x "$out/$tool-$version" ]; then
        ln -sfn "$tool-$version" "$out/$tool"
        log "$tool $version already built: $out/$tool-$version"
        continue
    fi
    case $tool in
        crictl) timed crictl "$version" build_crictl ;;
        critest) timed critest "$version" build_critest ;;
        kubelet) timed kubelet "$version" build_kubelet "$version" ;;
    esac
done
