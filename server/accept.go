package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Why crease accepts connections itself: gnet v2.9.7 shuts the whole engine down when
// accept(2) fails with EMFILE (every connection is lost). Here an accept failure only
// slows the accept loop down, existing connections keep being served, and admission
// control (a connection cap and a handshake token bucket) refuses the excess with 503
// before it ever reaches a loop.

// refusalWorkers bounds the goroutines answering refused connections with 503; beyond
// them a refused connection is simply closed.
const refusalWorkers = 64

// acceptLoop runs on its own goroutine until the listener is closed.
func (s *Server) acceptLoop() {
	reserve := openReserve()
	registering := make(chan (<-chan gnet.RegisteredResult), maxRegistering)
	go s.awaitRegistrations(registering)
	defer close(registering)
	var (
		backoff   time.Duration
		lastLog   time.Time
		suppress  int
		refusals  = make(chan struct{}, refusalWorkers)
		tcpLn, _  = s.ln.(*net.TCPListener)
		errnoName string
	)
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				if reserve != nil {
					reserve.Close()
				}
				return
			}
			errnoName = "other"
			var errno syscall.Errno
			if errors.As(err, &errno) {
				errnoName = errnoLabel(errno)
			}
			s.m.acceptErrors.WithLabelValues(errnoName).Inc()
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors: give the reserve back to accept one pending
				// connection and refuse it, so clients learn to back off instead of
				// waiting in the backlog, then sleep instead of spinning.
				if reserve != nil && tcpLn != nil {
					reserve.Close()
					reserve = nil
					if c, err := tcpLn.Accept(); err == nil {
						s.m.handshakes.WithLabelValues("overloaded").Inc()
						refuseNow(c)
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
			}
			continue
		}
		backoff = 0
		if reason := s.admitConn(); reason != "" {
			s.m.handshakes.WithLabelValues(reason).Inc()
			select {
			case refusals <- struct{}{}:
				go func() { defer func() { <-refusals }(); refuseHTTP(nc) }()
			default:
				// Every worker is busy (a storm): answer here, without waiting for
				// the request. A bare close would reset a connection whose request
				// already arrived, and the client would see no 503 at all.
				refuseNow(nc)
			}
			continue
		}
		if sb := s.opts.Shard.SendBuffer; sb > 0 {
			if tc, ok := nc.(*net.TCPConn); ok {
				_ = tc.SetWriteBuffer(sb)
			}
		}
		s.open.Add(1)
		res, err := s.engine.Register(gnet.NewNetConnContext(context.Background(), nc))
		if err != nil {
			s.open.Add(-1)
			nc.Close()
			continue
		}
		// Each registration holds a goroutine of gnet's pool until its loop takes the
		// connection; bounding them bounds the goroutines a storm creates (the runtime
		// never frees a goroutine's descriptor, so a peak of thousands would stay).
		select {
		case registering <- res:
		case <-s.stop:
			return
		}
	}
}

// maxRegistering bounds connections handed to gnet and not yet taken by a loop.
const maxRegistering = 64

// awaitRegistrations drains registration results in order, so that at most
// maxRegistering are in flight.
func (s *Server) awaitRegistrations(registering <-chan (<-chan gnet.RegisteredResult)) {
	for res := range registering {
		if r, ok := <-res; ok && r.Err != nil {
			s.open.Add(-1)
			s.m.acceptErrors.WithLabelValues("register").Inc()
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

// refuseHTTP reads the request head (so closing does not reset the connection under
// the answer), answers 503 with a jittered Retry-After and closes.
func refuseHTTP(nc net.Conn) {
	defer nc.Close()
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
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// refuseNow answers 503 without waiting for the request: used on the accept loop when
// descriptors are exhausted or every refusal worker is busy. What already arrived of
// the request is read first (without blocking), so that the close sends a FIN behind
// the answer instead of a reset, which makes the client's kernel drop the answer
// unread.
func refuseNow(nc net.Conn) {
	discardArrived(nc)
	_ = nc.SetDeadline(time.Now().Add(50 * time.Millisecond))
	_, _ = nc.Write(busyResponse())
	discardArrived(nc)
	nc.Close()
}

// discardArrived reads and drops whatever the peer has sent so far, never waiting.
func discardArrived(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var buf [2048]byte
	_ = rc.Read(func(fd uintptr) bool {
		for range 4 {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_DONTWAIT)
			if err != nil || n < len(buf) {
				break
			}
		}
		return true // done, whether or not anything was there
	})
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
