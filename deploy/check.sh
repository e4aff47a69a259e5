#!/usr/bin/env bash
# Validates the operators' files in deploy/ with the real tools where present:
#   haproxy -c (env substituted with 127.0.0.1 ports), a real HAProxy run in front of two
#   fake gateways (test_haproxy.py), systemd-analyze verify, sysctl keys known to this
#   kernel, the Grafana dashboard JSON and its PromQL (promtool when installed).
# Loopback only; writes nothing outside a temp dir. Prints "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"
pass=0 fail=0 skip=0
ok()   { echo "ok   $*"; pass=$((pass+1)); }
bad()  { echo "FAIL $*"; fail=$((fail+1)); }
skip() { echo "skip $*"; skip=$((skip+1)); }

if command -v haproxy >/dev/null; then
  if GW1_WS=127.0.0.1:18080 GW1_HTTP=127.0.0.1:18081 GW2_WS=127.0.0.1:19080 \
     GW2_HTTP=127.0.0.1:19081 FRONT_WS=127.0.0.1:18090 FRONT_HTTP=127.0.0.1:18000 \
     STATS_ADDR=127.0.0.1:18404 HAPROXY_MAXCONN=4000 haproxy -c -q -f haproxy.cfg; then
    ok "haproxy -c with env"; else bad "haproxy -c with env"; fi
  if haproxy -c -q -f haproxy.cfg; then ok "haproxy -c with defaults"; else bad "haproxy -c with defaults"; fi
  if timeout 90 python3 test_haproxy.py; then ok "haproxy real run"; else bad "haproxy real run"; fi
else
  skip "haproxy not installed (apt-get install haproxy)"
fi

if command -v systemd-analyze >/dev/null; then
  # The binary is not installed here: verify a copy whose ExecStart exists.
  t=$(mktemp -d)
  sed 's#^ExecStart=.*#ExecStart=/bin/sleep infinity#' crease.service > "$t/crease.service"
  cp crease.socket "$t/crease.socket"
  if out=$(systemd-analyze verify "$t/crease.service" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify crease.service"; else bad "systemd-analyze verify: $out"; fi
  if out=$(systemd-analyze verify "$t/crease.socket" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify crease.socket"; else bad "systemd-analyze verify crease.socket: $out"; fi
  systemd-analyze security --offline=true "$t/crease.service" 2>/dev/null | tail -1
  rm -rf "$t"
else
  skip "systemd-analyze not available"
fi

missing=$(grep -Ev '^\s*(#|;|$)' 99-crease.conf | sed 's/^-//; s/\s*=.*//' | while read -r k; do
  [ -e "/proc/sys/${k//./\/}" ] || echo "$k"; done)
if [ -z "$missing" ]; then ok "99-crease.conf keys exist in /proc/sys"; else bad "unknown sysctl keys: $missing"; fi

if python3 -m json.tool grafana-dashboard.json >/dev/null; then ok "dashboard JSON parses"; else bad "dashboard JSON"; fi
if python3 check_dashboard.py; then ok "dashboard PromQL"; else bad "dashboard PromQL"; fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
