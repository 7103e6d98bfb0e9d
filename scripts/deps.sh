#!/usr/bin/env bash
# Installs what building and testing hull needs on a fresh Debian 12 machine of this kind.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(busybox-static runc jq hyperfine containerd podman golang-github-containers-common crun file)
# hull-cri: protoc for the CRI bindings; a registry and skopeo for its pull tests; Go fetches cri-api.
packages+=(protobuf-compiler docker-registry skopeo)
# conformance/images.sh: nginx goes into the nginx images (it is
# not started on the host); gcc builds the setuid probe of the nonewprivs image.
packages+=(nginx curl gcc)
# hull-sandbox's stage-1 workloads (bundles/sandbox): static C programs against glibc.
packages+=(libc6-dev)
# hull-cri pod networking: CNI plugins in /usr/lib/cni (conformance/cni-setup.sh), ip and nsenter.
packages+=(containernetworking-plugins iproute2 util-linux)
# hull-cri HTTPS pulls: the system trust store; the openssl CLI makes the TLS test's CA.
packages+=(ca-certificates openssl)
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || packages+=(golang-go)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packages must not start their daemons (containerd, docker-registry on :5000):
    # the tests start what they need themselves, on loopback.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt-get install -y -qq "${missing[@]}" >/dev/null
    if [ $created_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
# Debian's docker-registry enables a unit that would listen on :5000 on every address;
# hull's tests start their own registry on loopback only.
if [ -d /run/systemd/system ] && systemctl is-enabled docker-registry >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
# Likewise nginx: it is only copied into test images and must not serve :80 on the host.
if [ -d /run/systemd/system ] && systemctl is-enabled nginx >/dev/null 2>&1; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "deps: cargo (Rust) is required" >&2; exit 1; }
