package server

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Why crease accepts connections itself: gnet v2.9.7 shuts the whole engine down when
// accept(2) fails with EMFILE (every connection is lost), cannot close its listener
// without closing every connection (the drain's handover needs that) and cannot take a
// listener it did not bind (socket activation, a restart that keeps the socket). Here an
// accept failure only slows the accept loop down, existing connections keep being
// served, and admission control (a connection cap and a handshake token bucket)
// refuses the excess with 503 before it ever reaches a loop. Admitted sockets go
// straight to a loop (enroll_linux.go), without a net.Conn.

// refusalWorkers bounds the goroutines answering refused connections with 503; beyond
// them a refused connection is answered on the accept loop without waiting.
const refusalWorkers = 64

// acceptLoop runs on its own goroutine until the listener is closed.
func (s *Server) acceptLoop() {
	acc, err := newAcceptor(s.ln)
	if err != nil {
		s.log.Error("cannot accept WebSocket connections", "err", err)
		return
	}
	in, err := s.newInboxes()
	if err != nil {
		s.log.Error("cannot hand connections to the event loops", "err", err)
		return
	}
	defer in.close()
	reserve := openReserve()
	defer func() {
		if reserve != nil {
			reserve.Close()
		}
	}()
	var (
		backoff  time.Duration
		lastLog  time.Time
		suppress int
		refusals = make(chan struct{}, refusalWorkers)
	)
	for {
		p, err := acc.accept()
		if err != nil {
			if s.stopping.Load() || acc.closed(err) {
				return
			}
			errnoName := "other"
			var errno syscall.Errno
			if errors.As(err, &errno) {
				errnoName = errnoLabel(errno)
			}
			s.m.acceptErrors.WithLabelValues(errnoName).Inc()
			if errno == syscall.EMFILE || errno == syscall.ENFILE {
				// Out of descriptors: give the reserve back to accept one pending
				// connection and refuse it, so clients learn to back off instead of
				// waiting in the backlog, then sleep instead of spinning.
				if reserve != nil {
					reserve.Close()
					reserve = nil
					if p, ok := acc.tryAccept(); ok {
						s.m.handshakes.WithLabelValues("overloaded").Inc()
						p.refuseNow()
					}
					reserve = openReserve()
				}
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			if time.Since(lastLog) > 10*time.Second {
				s.log.Error("accept failing; existing connections are still served", "err", err,
					"suppressed", suppress, "retry_in", backoff)
				lastLog, suppress = time.Now(), 0
			} else {
				suppress++
			}
			select {
			case <-time.After(backoff):
			case <-s.stop:
				return
			}
			continue
		}
		backoff = 0
		if reason := s.admitConn(); reason != "" {
			s.m.handshakes.WithLabelValues(reason).Inc()
			select {
			case refusals <- struct{}{}:
				go func() { defer func() { <-refusals }(); p.refuseHTTP() }()
			default:
				// Every worker is busy (a storm): answer here, without waiting for
				// the request. A bare close would reset a connection whose request
				// already arrived, and the client would see no 503 at all.
				p.refuseNow()
			}
			continue
		}
		if sb := s.opts.Shard.SendBuffer; sb > 0 {
			p.setSendBuffer(sb)
		}
		s.open.Add(1)
		if !in.post(p) {
			s.open.Add(-1)
			p.close()
		}
	}
}

// admitConn applies admission control; "" admits.
func (s *Server) admitConn() string {
	switch {
	case s.draining.Load():
		return "draining"
	case s.open.Load() >= int64(s.opts.MaxConns):
		return "over_capacity"
	case !s.admit.allow():
		return "overloaded"
	}
	return ""
}

func errnoLabel(e syscall.Errno) string {
	switch e {
	case syscall.EMFILE:
		return "EMFILE"
	case syscall.ENFILE:
		return "ENFILE"
	case syscall.ENOBUFS:
		return "ENOBUFS"
	case syscall.ENOMEM:
		return "ENOMEM"
	}
	return "errno_" + strconv.Itoa(int(e))
}

// openReserve holds a descriptor back for the accept loop to give up when the process
// runs out of them (see acceptLoop).
func openReserve() *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return nil
	}
	return f
}

// retryAfter spreads retries of refused clients over 1-5 s.
func retryAfter() string { return strconv.Itoa(1 + rand.IntN(5)) }

func busyResponse() []byte {
	return []byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: " + retryAfter() +
		"\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n\r\ngateway busy; retry\r\n")
}

// deadlineConn is what answering a refusal needs of a connection: a net.Conn, or an
// accepted socket as an *os.File.
type deadlineConn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// answerRefusal reads the request head (so closing does not reset the connection under
// the answer), answers 503 with a jittered Retry-After and shuts the write side; the
// caller closes. It runs on a refusal worker.
func answerRefusal(nc deadlineConn, closeWrite func()) {
	_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	var got int
	for got < len(buf) {
		n, err := nc.Read(buf[got:])
		got += n
		if err != nil || containsCRLFCRLF(buf[:got]) {
			break
		}
	}
	_, _ = nc.Write(busyResponse())
	closeWrite()
}

func containsCRLFCRLF(b []byte) bool {
	for i := 3; i < len(b); i++ {
		if b[i] == '\n' && b[i-1] == '\r' && b[i-2] == '\n' && b[i-3] == '\r' {
			return true
		}
	}
	return false
}

// admission is a token bucket on handshakes.
type admission struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newAdmission(rate float64, burst int) *admission {
	return &admission{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

func (a *admission) allow() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	a.tokens += now.Sub(a.last).Seconds() * a.rate
	if a.tokens > a.burst {
		a.tokens = a.burst
	}
	a.last = now
	if a.tokens < 1 {
		return false
	}
	a.tokens--
	return true
}
