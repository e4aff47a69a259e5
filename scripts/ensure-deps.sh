#!/usr/bin/env bash
# Installs the system packages the test suite runs for real (Debian): redis-server,
# haproxy, chromium, node, podman (with runc: crun refuses this machine's hybrid
# cgroups). Does nothing for a package already present.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static) # the shell of the stand-in golang image (deploy/container)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-deps: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The npm tools of the tests (typescript, ws, ajv, type packages: scripts/npm-tools), with
# npm ci into a cache directory outside the repository, once per lockfile (its hash is
# the .stamp that internal/npmtest checks). Offline once installed.
npm_tools=${CREASE_NPM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/crease/npm-tools}
npm_lock="$(cd "$(dirname "$0")" && pwd)/npm-tools"
npm_stamp=$(sha256sum "$npm_lock/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$npm_tools/.stamp" 2>/dev/null)" != "$npm_stamp" ]; then
  echo "ensure-deps: installing the npm test tools into $npm_tools"
  mkdir -p "$npm_tools"
  cp "$npm_lock/package.json" "$npm_lock/package-lock.json" "$npm_tools/"
  (cd "$npm_tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$npm_stamp" >"$npm_tools/.stamp"
fi
# The Node.js publisher example's npm dependencies (its package-lock.json pins them).
node_pub="$(cd "$(dirname "$0")/.." && pwd)/examples/node-publisher"
if [ -f "$node_pub/package-lock.json" ] && [ ! -d "$node_pub/node_modules/redis" ]; then
  echo "ensure-deps: npm ci in examples/node-publisher"
  (cd "$node_pub" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# Debian starts redis-server as a service on install; the tests start their own on free
# ports, so stop the packaged one if it is running to leave port 6379 and the CPU alone.
if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
pkill -x redis-server >/dev/null 2>&1 || true
exit 0
