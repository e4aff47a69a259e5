package main

import (
	"math/bits"
	"strconv"

	"golang.org/x/sys/unix"
)

// frames parses every complete frame of c.buf+data and keeps the rest.
func (w *worker) frames(c *conn, data []byte, now int64) {
	b := data
	if len(c.buf) > 0 {
		c.buf = append(c.buf, data...)
		b = c.buf
	}
	for len(b) >= 2 && c.state == stOpen {
		op := b[0] & 0x0f
		fin := b[0]&0x80 != 0
		masked := b[1]&0x80 != 0
		l := uint64(b[1] & 0x7f)
		h := 2
		switch l {
		case 126:
			if len(b) < 4 {
				goto partial
			}
			l = uint64(b[2])<<8 | uint64(b[3])
			h = 4
		case 127:
			if len(b) < 10 {
				goto partial
			}
			l = 0
			for i := 2; i < 10; i++ {
				l = l<<8 | uint64(b[i])
			}
			h = 10
		}
		if masked {
			h += 4
		}
		if l > 16<<20 {
			w.st.protoErrors.Add(1)
			w.closeOpen(c, 1009)
			return
		}
		if uint64(len(b)) < uint64(h)+l {
			goto partial
		}
		payload := b[h : h+int(l)]
		if masked {
			key := b[h-4 : h]
			for i := range payload {
				payload[i] ^= key[i&3]
			}
		}
		b = b[h+int(l):]
		if !fin || op == 0 {
			// The contract says unfragmented; count and skip.
			w.st.protoErrors.Add(1)
			continue
		}
		switch op {
		case 1:
			if w.lg.cfg.proto == "centrifuge" {
				w.centrifuge(c, payload, now)
			} else {
				w.message(c, payload, now)
			}
		case 2:
			w.st.recv[rBinary].Add(1)
		case 8:
			code := 1005
			if len(payload) >= 2 {
				code = int(payload[0])<<8 | int(payload[1])
			}
			c.gotClose = true
			w.st.bump(&w.st.closes, strconv.Itoa(code))
			w.closeOpen(c, code)
			return
		case 9:
			w.st.recv[rPing].Add(1)
			w.send(c, 0xA, payload)
		}
	}
	if c.state != stOpen {
		return
	}
	if len(b) == 0 {
		if cap(c.buf) > 4096 {
			c.buf = nil
		} else {
			c.buf = c.buf[:0]
		}
		return
	}
partial:
	if len(c.buf) > 0 {
		// b aliases c.buf: move the tail to the front.
		n := copy(c.buf, b)
		c.buf = c.buf[:n]
	} else {
		c.buf = append(c.buf[:0], b...)
	}
}

// closeOpen answers a close (or closes for a protocol error) and drops the connection.
func (w *worker) closeOpen(c *conn, code int) {
	if code != 1005 && code != 1006 {
		w.send(c, 0x8, []byte{byte(code >> 8), byte(code)})
	} else {
		w.send(c, 0x8, nil)
	}
	w.drop(c, true)
}

func (w *worker) sendText(c *conn, p []byte) { w.send(c, 0x1, p) }

// send writes one masked client frame; client frames here are tiny, so a short write is
// treated as lost rather than buffered.
func (w *worker) send(c *conn, op byte, p []byte) {
	if len(p) > 125 {
		p = p[:125]
	}
	var f [2 + 4 + 125]byte
	f[0] = 0x80 | op
	f[1] = 0x80 | byte(len(p))
	w.rnd ^= w.rnd << 13
	w.rnd ^= w.rnd >> 7
	w.rnd ^= w.rnd << 17
	k := bits.RotateLeft64(w.rnd, 7)
	key := [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
	copy(f[2:6], key[:])
	for i, ch := range p {
		f[6+i] = ch ^ key[i&3]
	}
	_, _ = unix.Write(c.fd, f[:6+len(p)])
}
