#!/usr/bin/env bash
# Builds the Go streaming client (client-go's remotecommand and portforward) that
# cri-shim/tests/stream_protocols.rs drives hull-cri's streaming server with, into
# conformance/work/bin/streamclient.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../work/bin"
mkdir -p "$out"
cd "$here"
CGO_ENABLED=0 go build -o "$out/streamclient" .
echo "built $out/streamclient"
