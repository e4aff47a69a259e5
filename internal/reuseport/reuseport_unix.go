//go:build unix

// Package reuseport binds TCP listeners that several processes can share
// (SO_REUSEPORT): the gateway's, so that a successor can bind the same address while the
// old process drains, and the baseline servers' of the benchmarks.
package reuseport

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Supported reports whether Listen can share a port on this system.
const Supported = true

// Listen binds addr (TCP), with SO_REUSEPORT when reusePort is set.
func Listen(addr string, reusePort bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if reusePort {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}
