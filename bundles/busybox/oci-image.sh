#!/usr/bin/env bash
# Packs the busybox rootfs (from build.sh) as an OCI image archive (oci-layout, index.json,
# one uncompressed layer), for `ctr image import` and `podman load`.
# Usage: oci-image.sh <out.tar> [image-name:tag]
set -euo pipefail
out=${1:?usage: oci-image.sh <out.tar> [name:tag]}
ref=${2:-localhost/hull-busybox:latest}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$here/build.sh" "$work/bundle" >/dev/null 2>&1
mkdir -p "$work/layout/blobs/sha256"
# A reproducible layer: sorted names, fixed owner and mtime.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00Z' \
    -C "$work/bundle/rootfs" -cf "$work/layer.tar" .
layer_digest=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar")
mv "$work/layer.tar" "$work/layout/blobs/sha256/$layer_digest"

jq -n --arg diff "sha256:$layer_digest" '{
  architecture: "amd64", os: "linux",
  config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["sh"], WorkingDir: "/"},
  rootfs: {type: "layers", diff_ids: [$diff]},
  history: [{created: "2026-01-01T00:00:00Z", created_by: "bundles/busybox/oci-image.sh"}]
}' > "$work/config.json"
config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$work/layout/blobs/sha256/$config_digest"

jq -n --arg c "sha256:$config_digest" --argjson cs "$config_size" \
      --arg l "sha256:$layer_digest" --argjson ls "$layer_size" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
  layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]
}' > "$work/manifest.json"
manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$work/layout/blobs/sha256/$manifest_digest"

jq -n --arg m "sha256:$manifest_digest" --argjson ms "$manifest_size" --arg ref "$ref" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
               platform: {architecture: "amd64", os: "linux"},
               annotations: {"org.opencontainers.image.ref.name": $ref, "io.containerd.image.name": $ref}}]
}' > "$work/layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"
tar -C "$work/layout" -cf "$out" oci-layout index.json blobs
echo "oci-image: wrote $out ($ref)" >&2
