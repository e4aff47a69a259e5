//go:build unix

package server

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

const reusePortSupported = true

// listen binds addr, with SO_REUSEPORT when reusePort is set so that a successor process
// can bind the same address while this one drains.
func listen(addr string, reusePort bool) (net.Listener, error) {
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
