package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// Slow readers (--slow-frac) are clients on a bad link: after the upgrade they read at
// most --slow-rate bytes per second, through a small receive buffer, so that the
// gateway's outbound budget, not the kernel, holds what they cannot take yet. Their
// worker polls them every slowTick instead of waiting for readiness. After SIGUSR2 (the
// final check) they catch up at full speed, so that they can end equal to the snapshot.

const slowTick = 250 * time.Millisecond

// startSlow takes c (open, frames of the handshake read already) off readiness events
// and onto the worker's slow list.
func (w *worker) startSlow(c *conn) {
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: 0, Fd: int32(c.fd)})
	w.slow = append(w.slow, slowConn{c: c, gen: c.gen})
}

type slowConn struct {
	c   *conn
	gen uint32
}

// pollSlow reads each slow connection's share of bytes for the time since the last
// poll; connections that closed since are dropped from the list.
func (w *worker) pollSlow(now time.Time) {
	if len(w.slow) == 0 || now.Sub(w.slowAt) < slowTick {
		return
	}
	elapsed := now.Sub(w.slowAt)
	w.slowAt = now
	budget := int(float64(w.lg.cfg.slowRate) * min(elapsed.Seconds(), 1))
	budget = max(budget, 1)
	us := now.UnixMicro()
	kept := w.slow[:0]
	for _, sc := range w.slow {
		c := sc.c
		if c.gen != sc.gen || c.state != stOpen {
			continue
		}
		w.readSome(c, budget, us)
		if c.gen == sc.gen && c.state == stOpen {
			kept = append(kept, sc)
		}
	}
	clear(w.slow[len(kept):])
	w.slow = kept
}

// readSome reads at most n bytes of c and consumes them.
func (w *worker) readSome(c *conn, n int, now int64) {
	got, err := unix.Read(c.fd, w.rbuf[:min(n, len(w.rbuf))])
	if got > 0 {
		w.consume(c, w.rbuf[:got], now)
		return
	}
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	w.closed(c)
}

// catchUp puts every slow connection back on readiness events, at full speed.
func (w *worker) catchUp() {
	for _, sc := range w.slow {
		c := sc.c
		if c.gen != sc.gen || c.state != stOpen {
			continue
		}
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
		w.readable(c, time.Now().UnixMicro())
	}
	clear(w.slow)
	w.slow = nil
}
