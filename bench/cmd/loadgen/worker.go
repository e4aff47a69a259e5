package main

import (
	"bytes"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func (w *worker) loop() {
	defer w.lg.workersDone.Done()
	evs := make([]unix.EpollEvent, 512)
	lg := w.lg
	for !lg.stopping.Load() {
		n, err := unix.EpollWait(w.epfd, evs, 100)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			fatal("epoll_wait: %v", err)
		}
		var now int64
		for i := 0; i < n; i++ {
			fd := int(evs[i].Fd)
			if fd == w.evfd {
				var b [8]byte
				_, _ = unix.Read(w.evfd, b[:])
				continue
			}
			c := lg.table[fd].Load()
			if c == nil || c.fd != fd || c.state == stClosed {
				continue
			}
			ev := evs[i].Events
			if c.state == stDialing {
				if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
					continue
				}
				w.connected(c)
				continue
			}
			if ev&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
				if now == 0 {
					now = time.Now().UnixMicro()
				}
				w.readable(c, now)
			}
		}
		w.housekeeping()
	}
}

// housekeeping runs after each wait: snapshot answers, slow readers, the catch-up and
// the final count, each on this worker's goroutine, which owns its connections.
func (w *worker) housekeeping() {
	for {
		select {
		case r := <-w.snapq:
			if gen, ok := w.open[r.c]; ok && gen == r.gen {
				w.chainSnapshot(r)
			}
			continue
		default:
		}
		break
	}
	if len(w.asks) > 0 {
		w.flushAsks()
	}
	now := time.Now()
	if w.lg.catchup.Load() && !w.caughtUp {
		w.caughtUp = true
		w.catchUp()
	}
	w.pollSlow(now)
	if fk, ok := w.lg.finalKey(); ok && now.Sub(w.countedAt) >= 100*time.Millisecond {
		w.countedAt = now
		w.recountFinal(fk)
	}
}

func (w *worker) readable(c *conn, now int64) {
	for {
		n, err := unix.Read(c.fd, w.rbuf)
		if n > 0 {
			w.consume(c, w.rbuf[:n], now)
			if c.state == stClosed {
				return
			}
			if n < len(w.rbuf) {
				return
			}
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		w.closed(c)
		return
	}
}

// closed handles EOF or a reset on c.
func (w *worker) closed(c *conn) {
	if c.state == stOpen {
		if !c.gotClose {
			w.st.bump(&w.st.closes, "eof")
		}
		w.drop(c, true)
	} else {
		w.st.failedHandshakes.Add(1)
		w.st.bump(&w.st.status, "eof")
		w.drop(c, false)
	}
}

func (w *worker) consume(c *conn, data []byte, now int64) {
	lg := w.lg
	if c.state == stHandshake {
		c.buf = append(c.buf, data...)
		end := bytes.Index(c.buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(c.buf) > 8192 {
				w.st.failedHandshakes.Add(1)
				w.st.bump(&w.st.status, "toolong")
				w.drop(c, false)
			}
			return
		}
		status := parseStatus(c.buf)
		if status != 101 {
			w.st.failedHandshakes.Add(1)
			w.st.bump(&w.st.status, strconv.Itoa(status))
			w.drop(c, false)
			return
		}
		if lg.cfg.cookies {
			if ck := setCookie(c.buf[:end]); ck != "" {
				c.cookie = ck
			}
		}
		rest := c.buf[end+4:]
		c.state = stOpen
		w.open[c] = c.gen
		c.opened = true
		c.attempt = 0
		<-lg.inflight
		lg.open.Add(1)
		lg.pending.Add(-1)
		w.st.connected.Add(1)
		lg.stormOpen()
		if lg.cfg.proto == "centrifuge" {
			w.sendText(c, []byte(`{"id":1,"connect":{}}`))
		} else if lg.cfg.subscribeByOp {
			w.sendText(c, []byte(`{"op":"subscribe","match":"`+c.match+`"}`))
		}
		if c.stalled {
			// Stop reading for good: the server's frames pile up in its own buffers.
			lg.stalled.Add(1)
			_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: 0, Fd: int32(c.fd)})
			c.buf = nil
			return
		}
		if len(rest) > 0 {
			tail := append([]byte(nil), rest...)
			c.buf = c.buf[:0]
			w.frames(c, tail, now)
		} else {
			c.buf = c.buf[:0]
		}
		if c.slow && !w.caughtUp && c.state == stOpen {
			w.startSlow(c)
		}
		return
	}
	w.frames(c, data, now)
}

func parseStatus(b []byte) int {
	// "HTTP/1.1 101 Switching Protocols"
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 || len(b) < sp+4 {
		return 0
	}
	v, _ := strconv.Atoi(string(b[sp+1 : sp+4]))
	return v
}

// setCookie returns the first "name=value" of the Set-Cookie headers of an HTTP
// answer's head, "" if there is none.
func setCookie(head []byte) string {
	const key = "\r\nset-cookie:"
	lower := bytes.ToLower(head)
	i := bytes.Index(lower, []byte(key))
	if i < 0 {
		return ""
	}
	v := head[i+len(key):]
	if j := bytes.IndexAny(v, ";\r"); j >= 0 {
		v = v[:j]
	}
	return string(bytes.TrimSpace(v))
}
