package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"crease/internal/reuseport"
)

// fileListener is the WebSocket listening socket held as an *os.File. The accept loop
// waits for it on Go's poller and accepts with accept4(2) itself (accept_linux.go):
// the RawConn of a net.TCPListener cannot wait (its Read is EINVAL), a file's can. It is
// also how a socket that crease did not bind (socket activation, an inherited
// descriptor) becomes its listener.
type fileListener struct {
	f      *os.File
	rc     syscall.RawConn
	addr   net.Addr
	closed atomic.Bool
}

// listenWS binds the WebSocket address (listen_unix.go) and keeps the socket as a file.
func listenWS(addr string, reusePort bool) (net.Listener, error) {
	ln, err := reuseport.Listen(addr, reusePort)
	if err != nil {
		return nil, err
	}
	defer ln.Close() // the file holds its own descriptor of the same socket
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, err
	}
	return newFileListener(f)
}

// newFileListener takes f, a listening TCP socket in non-blocking mode (as File and
// inheritedListener give it): Go's poller waits on it.
func newFileListener(f *os.File) (*fileListener, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var sa unix.Sockaddr
	var listening int
	cerr := rc.Control(func(fd uintptr) {
		if listening, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil {
			sa, err = unix.Getsockname(int(fd))
		}
	})
	if err == nil {
		err = cerr
	}
	if err == nil && listening != 1 {
		err = errors.New("not a listening socket")
	}
	if err == nil {
		if _, tcp := sa.(*unix.SockaddrInet4); !tcp {
			if _, tcp = sa.(*unix.SockaddrInet6); !tcp {
				err = errors.New("not a TCP socket")
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("server: %s: %w", f.Name(), err)
	}
	return &fileListener{f: f, rc: rc, addr: sockaddrToTCP(sa)}, nil
}

// Accept implements net.Listener for completeness; the gateway's accept loop does not
// use it.
func (l *fileListener) Accept() (net.Conn, error) {
	return nil, errors.New("server: the WebSocket listener is served by the accept loop")
}

// Close stops the listener: a waiting accept returns, new connections are refused.
func (l *fileListener) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	return l.f.Close()
}

func (l *fileListener) Addr() net.Addr { return l.addr }

func sockaddrToTCP(sa unix.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *unix.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return a
	}
	return &net.TCPAddr{}
}

// inheritedWS takes over f, a listening socket another process bound: a descriptor of
// its own, non-blocking (a flag of the socket, shared with whoever else holds it, as
// net.FileListener sets it too), as a file Go's poller waits on.
func inheritedWS(f *os.File) (net.Listener, error) {
	defer f.Close()
	var fd int
	var err error
	if cerr := controlFile(f, func(ofd int) { fd, err = unix.FcntlInt(uintptr(ofd), unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		err = cerr
	}
	if err == nil {
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("server: inherited WebSocket listener %s: %w", f.Name(), err)
	}
	return newFileListener(os.NewFile(uintptr(fd), f.Name()))
}

func controlFile(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}
