// Package ops holds the operations tests of the gateway: every metric of
// PROTOCOL.md present with sane values after real traffic, the graceful drain of 2,000
// clients (reconnect spread, 1012 closes, /readyz, refusals), admission control under a
// handshake storm while subscribers keep receiving, and HAProxy (deploy/haproxy.cfg)
// in front of two gateways: cookie stickiness and a drain moving clients across.
//
// The tests run real gateways on loopback (servertest) and real HAProxy when installed;
// the descriptor-exhaustion and signal tests of the `crease` binary are in cmd/crease.
package ops
