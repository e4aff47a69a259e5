package shard

import (
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// unacked returns the bytes of gc's kernel send queue its peer has not acknowledged
// (SIOCOUTQ), or 0 if it cannot tell.
func unacked(gc gnet.Conn) int { return socketQueue(gc, unix.SIOCOUTQ) }

// unread returns the bytes waiting in gc's kernel receive queue (SIOCINQ): what the
// peer sent and the loop has not read yet; 0 if it cannot tell.
func unread(gc gnet.Conn) int { return socketQueue(gc, unix.SIOCINQ) }

// socketQueue asks the kernel for one of gc's queue lengths (ioctl req), 0 if it
// cannot tell.
func socketQueue(gc gnet.Conn, req uint) int {
	fd := gc.Fd()
	if fd < 0 {
		return 0
	}
	n, err := unix.IoctlGetInt(fd, req)
	if err != nil {
		return 0
	}
	return n
}
