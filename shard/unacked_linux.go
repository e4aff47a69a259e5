package shard

import (
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// unacked returns the bytes of gc's kernel send queue its peer has not acknowledged
// (SIOCOUTQ), or 0 if it cannot tell.
func unacked(gc gnet.Conn) int {
	fd := gc.Fd()
	if fd < 0 {
		return 0
	}
	n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0
	}
	return n
}

// unread returns the bytes waiting in gc's kernel receive queue (SIOCINQ): what the
// peer sent and the loop has not read yet; 0 if it cannot tell.
func unread(gc gnet.Conn) int {
	fd := gc.Fd()
	if fd < 0 {
		return 0
	}
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return 0
	}
	return n
}
