#!/usr/bin/env bash
# Builds the crease image from a binary built on this host, so no registry is needed:
# go build (CGO_ENABLED=0, static), a rootfs build context, then Dockerfile.prebuilt.
#
#   deploy/container/build.sh [TAG] [extra build args...]     # TAG defaults to crease:dev
#
# CONTAINER_TOOL picks podman or docker (default: podman if installed, else docker);
# GOARCH cross-builds (GOARCH=arm64 ... --platform linux/arm64).
set -euo pipefail
tag=${1:-crease:dev}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/../.." && pwd)
tool=${CONTAINER_TOOL:-}
if [ -z "$tool" ]; then
  if command -v podman >/dev/null 2>&1; then tool=podman
  elif command -v docker >/dev/null 2>&1; then tool=docker
  else echo "build.sh: neither podman nor docker found (apt-get install podman)" >&2; exit 1
  fi
fi
ctx=$(mktemp -d "${TMPDIR:-/tmp}/crease-image-XXXXXX")
trap 'rm -rf "$ctx"' EXIT
rootfs=$ctx/rootfs
mkdir -p "$rootfs/tmp" "$rootfs/usr/share/doc/crease"
chmod 1777 "$rootfs/tmp"
(cd "$root" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o "$rootfs/crease" ./cmd/crease)
cp "$root/LICENSE" "$root/NOTICE" "$rootfs/usr/share/doc/crease/"
chmod 0755 "$rootfs/crease"
chmod 0644 "$rootfs/usr/share/doc/crease/LICENSE" "$rootfs/usr/share/doc/crease/NOTICE"
fmt=()
# The OCI image format has no HEALTHCHECK; podman keeps it only in the docker format.
[ "$(basename "$tool")" = podman ] && fmt=(--format docker)
"$tool" build "${fmt[@]}" -f "$root/deploy/container/Dockerfile.prebuilt" -t "$tag" "$@" "$ctx"
