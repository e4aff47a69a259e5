package main

import (
	"crypto/rand"
	"encoding/base64"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ramp queues the first attempt of every connection, at --connect-rate if set. Only
// first attempts are paced: reconnects go to the dialer at once, as real clients do not
// wait for the audience to finish arriving.
func (lg *loadgen) ramp(conns []*conn) {
	var interval time.Duration
	if lg.cfg.connectRate > 0 {
		interval = time.Duration(float64(time.Second) / lg.cfg.connectRate)
	}
	next := time.Now()
	for _, c := range conns {
		if lg.stopping.Load() {
			return
		}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
			if time.Since(next) > time.Second {
				next = time.Now()
			}
		}
		lg.dialq <- c
	}
}

// dialer opens sockets (bind, non-blocking connect) and hands them to a worker's epoll.
func (lg *loadgen) dialer() {
	for c := range lg.dialq {
		if lg.stopping.Load() {
			return
		}
		lg.inflight <- struct{}{}
		lg.dial(c)
	}
}

func (lg *loadgen) dial(c *conn) {
	lg.attempted.Add(1)
	w := lg.workers[c.id%len(lg.workers)]
	c.w = w
	c.state = stDialing
	c.buf = c.buf[:0]
	c.subs = c.subs[:0]
	c.gotClose = false
	c.started = time.Now()
	c.gen++
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		lg.dialFailed(w, c, "socket", err)
		return
	}
	// Let connect pick the port, so one source address is not limited to one bind per
	// port across all destinations.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if c.stalled {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, lg.cfg.stallRcvBuf)
	}
	if c.slow {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, lg.cfg.slowRcvBuf)
	}
	src := lg.cfg.srcs[c.id%len(lg.cfg.srcs)]
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src}); err != nil {
		unix.Close(fd)
		lg.dialFailed(w, c, "bind", err)
		return
	}
	var dst [4]byte
	copy(dst[:], net.ParseIP(lg.cfg.host).To4())
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: lg.cfg.port, Addr: dst})
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		lg.dialFailed(w, c, "connect", err)
		return
	}
	c.fd = fd
	lg.table[fd].Store(c)
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		lg.table[fd].Store(nil)
		unix.Close(fd)
		w.st.connectErrors.Add(1)
		<-lg.inflight
		lg.retry(c)
	}
}

func errName(err error) string {
	if e, ok := err.(syscall.Errno); ok {
		if s := unix.ErrnoName(e); s != "" {
			return s
		}
	}
	return err.Error()
}

// rampRetries bounds the attempts of a connection that never opened when reconnecting
// is off.
const rampRetries = 5

// dialFailed counts a dial that failed at stage (socket, bind, connect) before its fd
// reached a worker, frees its in-flight slot and queues it again.
func (lg *loadgen) dialFailed(w *worker, c *conn, stage string, err error) {
	w.st.connectErrors.Add(1)
	w.st.bump(&w.st.status, stage+":"+errName(err))
	<-lg.inflight
	lg.retry(c)
}

// retry schedules a new attempt for c, or gives it up when reconnecting is off.
func (lg *loadgen) retry(c *conn) {
	if lg.stopping.Load() || (lg.cfg.reconnect == "off" && (c.opened || c.attempt >= rampRetries)) {
		lg.pending.Add(-1)
		return
	}
	var d time.Duration
	switch {
	case lg.cfg.reconnect == "off":
		// A connection of the initial ramp that failed (a full accept queue, a 503) is
		// tried again a few times, as any client would; the failure stays counted.
		d = time.Duration(mrand.Int64N(int64(50*time.Millisecond<<c.attempt) + 1))
	case lg.cfg.reconnect == "fixed":
		d = lg.cfg.delay
	case c.drained:
		// The gateway spread after_ms over its clients already (PROTOCOL.md: close,
		// wait after_ms, reconnect), as the shipped clients do.
		d = time.Duration(c.afterMs) * time.Millisecond
		c.drained, c.afterMs = false, 0
	default:
		if c.attempt == 0 {
			d = time.Duration(mrand.Int64N(int64(lg.cfg.spread) + 1))
		} else {
			ceil := lg.cfg.delay << min(c.attempt, 20)
			if ceil > lg.cfg.backoffCap || ceil <= 0 {
				ceil = lg.cfg.backoffCap
			}
			d = time.Duration(mrand.Int64N(int64(ceil) + 1))
		}
	}
	c.attempt++
	// A timer is not a goroutine until it fires; the dialer does the work.
	time.AfterFunc(d, func() { lg.dialq <- c })
}

func (w *worker) connected(c *conn) {
	lg := w.lg
	if e, _ := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
		w.st.connectErrors.Add(1)
		w.st.bump(&w.st.status, "connect:"+errName(syscall.Errno(e)))
		w.drop(c, false)
		return
	}
	var kb [16]byte
	_, _ = rand.Read(kb[:])
	c.key = base64.StdEncoding.EncodeToString(kb[:])
	target := lg.cfg.path
	if !lg.cfg.subscribeByOp {
		target += "?match=" + c.match
	}
	req := "GET " + target + " HTTP/1.1\r\nHost: " + lg.cfg.host + ":" + strconv.Itoa(lg.cfg.port) +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + c.key +
		"\r\nSec-WebSocket-Version: 13\r\n"
	c.cookieNode = ""
	if c.cookie != "" {
		req += "Cookie: " + c.cookie + "\r\n"
		// HAProxy's cookie value is the gateway's name (deploy/haproxy.cfg).
		if _, v, ok := strings.Cut(c.cookie, "="); ok {
			c.cookieNode = v
		}
	}
	req += "\r\n"
	if _, err := unix.Write(c.fd, []byte(req)); err != nil {
		w.st.connectErrors.Add(1)
		w.st.bump(&w.st.status, "write:"+errName(err))
		w.drop(c, false)
		return
	}
	c.state = stHandshake
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
}

// drop closes c before it was open (a failed connect or handshake) and maybe retries.
func (w *worker) drop(c *conn, wasOpen bool) {
	lg := w.lg
	w.lg.table[c.fd].Store(nil)
	unix.Close(c.fd)
	prev := c.state
	c.state = stClosed
	if wasOpen {
		delete(w.open, c)
		if c.node != "" {
			w.st.addNode(c.node, -1)
			c.node = ""
		}
		lg.open.Add(-1)
		lg.pending.Add(1)
		lg.stormClose()
	} else if prev != stOpen {
		<-lg.inflight
	}
	lg.retry(c)
}
