//go:build !linux

package server

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Off Linux the accept loop takes net.Conns and hands them to gnet with Register, which
// costs more per connection (enroll_linux.go says what) but needs no gnet internals.

type acceptor struct{ ln net.Listener }

// pending is an accepted connection the accept loop owns until it enrolls or refuses it.
type pending struct{ nc net.Conn }

func newAcceptor(ln net.Listener) (*acceptor, error) { return &acceptor{ln: ln}, nil }

func (a *acceptor) accept() (pending, error) {
	nc, err := a.ln.Accept()
	return pending{nc: nc}, err
}

// tryAccept accepts one connection; off Linux it may wait for one.
func (a *acceptor) tryAccept() (pending, bool) {
	p, err := a.accept()
	return p, err == nil
}

func (a *acceptor) closed(err error) bool { return errors.Is(err, net.ErrClosed) }

func (p pending) close() { p.nc.Close() }

func (p pending) setSendBuffer(n int) {
	if tc, ok := p.nc.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(n)
	}
}

func (p pending) refuseHTTP() {
	defer p.nc.Close()
	answerRefusal(p.nc, func() {
		if tc, ok := p.nc.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	})
}

func (p pending) refuseNow() {
	_ = p.nc.SetDeadline(time.Now().Add(50 * time.Millisecond))
	_, _ = p.nc.Write(busyResponse())
	p.nc.Close()
}

type inboxes struct{ s *Server }

func (s *Server) newInboxes() (*inboxes, error) { return &inboxes{s: s}, nil }

// post registers p with gnet; the loop gnet picks runs OnOpen.
func (in *inboxes) post(p pending) bool {
	res, err := in.s.engine.Register(gnet.NewNetConnContext(context.Background(), p.nc))
	if err != nil {
		return false
	}
	go func() {
		if r, ok := <-res; ok && r.Err != nil {
			in.s.open.Add(-1)
			in.s.m.acceptErrors.WithLabelValues("register").Inc()
		}
	}()
	return true
}

func (in *inboxes) close() {}
