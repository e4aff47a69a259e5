package server

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"github.com/panjf2000/gnet/v2/pkg/socket"
	"golang.org/x/sys/unix"
)

// acceptor takes connections off the WebSocket listener with accept4(2) itself, waiting
// for readiness on Go's poller (the listener's RawConn). A connection is then a bare
// descriptor and its peer's address: no net.Conn (a netFD, two addresses, a poller
// registration undone at once) is made for a socket that gnet takes over anyway, and
// nothing is left for the collector but the address gnet keeps.
type acceptor struct {
	ln   *fileListener
	rc   syscall.RawConn
	wait func(fd uintptr) bool // rc.Read's callback, made once: no allocation per accept
	got  pending
	err  error
}

// pending is an accepted connection the accept loop owns until it enrolls or refuses it.
type pending struct {
	fd   int
	peer *net.TCPAddr
}

func newAcceptor(ln net.Listener) (*acceptor, error) {
	fl, ok := ln.(*fileListener)
	if !ok {
		return nil, fmt.Errorf("server: the WebSocket listener is a %T, not made by listenWS", ln)
	}
	a := &acceptor{rc: fl.rc, ln: fl}
	a.wait = func(fd uintptr) bool {
		a.got, a.err = accept4(int(fd))
		// EAGAIN: nothing queued; false makes rc.Read wait for readiness.
		return a.err != unix.EAGAIN
	}
	return a, nil
}

// accept blocks until a connection is accepted, accepting fails, or the listener closes.
func (a *acceptor) accept() (pending, error) {
	if err := a.rc.Read(a.wait); err != nil {
		return pending{}, err
	}
	return a.got, a.err
}

// tryAccept accepts one queued connection if there is one, without waiting.
func (a *acceptor) tryAccept() (p pending, ok bool) {
	var err error
	if cerr := a.rc.Control(func(fd uintptr) { p, err = accept4(int(fd)) }); cerr != nil || err != nil {
		return pending{}, false
	}
	return p, true
}

// closed reports whether err means the listener was closed.
func (a *acceptor) closed(error) bool { return a.ln.closed.Load() }

// accept4 accepts one connection, non-blocking and close-on-exec, with TCP_NODELAY as
// Go's net would set it (deltas are small and latency-bound). The peer's sockaddr is
// read into the stack, not allocated as unix.Accept4 would.
func accept4(lfd int) (pending, error) {
	for {
		var rsa unix.RawSockaddrAny
		size := uint32(unix.SizeofSockaddrAny)
		r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)),
			uintptr(unsafe.Pointer(&size)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
			fd := int(r)
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			return pending{fd: fd, peer: peerAddr(&rsa)}, nil
		case unix.EINTR, unix.ECONNABORTED,
			// Errors of the connection, not of the listener (accept(2), "Error
			// handling"): Linux reports them on accept; take the next one.
			unix.ENETDOWN, unix.EPROTO, unix.ENOPROTOOPT, unix.EHOSTDOWN, unix.ENONET,
			unix.EHOSTUNREACH, unix.EOPNOTSUPP, unix.ENETUNREACH:
			continue
		}
		return pending{}, e
	}
}

// peerAddr is the peer's address as gnet's RemoteAddr reports it: 56 bytes for IPv4,
// where gnet's own acceptor keeps 80 (the sockaddr and an address pointing into it).
func peerAddr(rsa *unix.RawSockaddrAny) *net.TCPAddr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		ip := make(net.IP, 4)
		copy(ip, sa.Addr[:])
		return &net.TCPAddr{IP: ip, Port: int(ntohs(sa.Port))}
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		if sa.Scope_id != 0 {
			// A zone: named the way gnet names it, whose release recycles the string.
			a, _ := socket.SockaddrToTCPOrUnixAddr(&unix.SockaddrInet6{Port: int(ntohs(sa.Port)), ZoneId: sa.Scope_id, Addr: sa.Addr}).(*net.TCPAddr)
			return a
		}
		ip := make(net.IP, 16)
		copy(ip, sa.Addr[:])
		return &net.TCPAddr{IP: ip, Port: int(ntohs(sa.Port))}
	}
	return nil
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func (p pending) close() { _ = unix.Close(p.fd) }

func (p pending) setSendBuffer(n int) {
	_ = unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n)
}

// refuseHTTP answers 503 after reading the request head, on a refusal worker. The
// socket becomes an *os.File, which Go's poller serves with deadlines (it is
// non-blocking), without the dup(2) a net.Conn would need.
func (p pending) refuseHTTP() {
	f := os.NewFile(uintptr(p.fd), "refused")
	defer f.Close()
	answerRefusal(f, func() { _ = unix.Shutdown(p.fd, unix.SHUT_WR) })
}

// refuseNow answers 503 without waiting for the request: used on the accept loop when
// descriptors are exhausted or every refusal worker is busy. What already arrived of
// the request is read first (without blocking), so that the close sends a FIN behind
// the answer instead of a reset, which makes the client's kernel drop the answer
// unread. The socket is non-blocking: an answer that does not fit is dropped.
func (p pending) refuseNow() {
	discardArrived(p.fd)
	_, _ = unix.Write(p.fd, busyResponse())
	discardArrived(p.fd)
	p.close()
}

// discardArrived reads and drops whatever the peer has sent so far, never waiting.
func discardArrived(fd int) {
	var buf [2048]byte
	for range 4 {
		n, _, err := unix.Recvfrom(fd, buf[:], unix.MSG_DONTWAIT)
		if err != nil || n < len(buf) {
			return
		}
	}
}
