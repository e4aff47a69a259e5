package main

import (
	"bytes"
)

// message handles one crease frame. It finds the few fields it needs by scanning instead
// of decoding JSON: the gateway's frames put them at the top level.
func (w *worker) message(c *conn, p []byte, now int64) {
	typ := strField(p, `"type":"`)
	switch string(typ) {
	case "delta":
		w.st.recv[rDelta].Add(1)
		w.delta(c, p, now)
	case "event":
		w.st.recv[rEvent].Add(1)
	case "hello":
		w.st.recv[rHello].Add(1)
		w.hello(c, string(strField(p, `"node":"`)))
	case "subscribed":
		w.st.recv[rSubscribed].Add(1)
		if w.lg.snaps != nil {
			w.chainSubscribed(c, string(strField(p, `"match":"`)))
		}
	case "resync":
		w.st.recv[rResync].Add(1)
		w.st.bump(&w.st.resyncs, string(strField(p, `"reason":"`)))
		m := strField(p, `"match":"`)
		if w.lg.snaps != nil {
			w.chainResync(c, string(m))
			break
		}
		for i := range c.subs {
			if c.subs[i].match == string(m) {
				// After a resync any seq is acceptable as the new base.
				c.subs[i].last = seqKey{}
			}
		}
	case "reconnect":
		w.st.recv[rReconnect].Add(1)
		if w.lg.cfg.reconnect == "jitter" {
			// Protocol clients close at once and come back after after_ms; fixed-mode
			// clients ignore it and wait for the server's close.
			c.afterMs = int64(numField(p, `"after_ms":`))
			c.drained = true
			c.gotClose = true
			w.st.bump(&w.st.closes, "reconnect")
			w.closeOpen(c, 1000)
		}
	case "error":
		w.st.recv[rError].Add(1)
	default:
		w.st.recv[rOther].Add(1)
	}
}

func (w *worker) delta(c *conn, p []byte, now int64) {
	m := strField(p, `"match":"`)
	seq := numField(p, `"seq":`)
	if ts := int64(numField(p, `"ts":`)); ts > 0 && !c.slow {
		lat := now - ts
		if lat < 1 {
			lat = 1
		}
		_ = w.hist.RecordValue(lat)
		if w.lg.cfg.windowHist {
			w.winMu.Lock()
			_ = w.win.RecordValue(lat)
			w.winMu.Unlock()
		}
	}
	if w.lg.snaps != nil {
		k := seqKey{epochOf(p), seq}
		for i := range c.subs {
			if s := &c.subs[i]; s.match == string(m) {
				w.chainDelta(c, s, k, p)
				return
			}
		}
		// A delta before its subscribed frame: start the algorithm here.
		w.chainSubscribed(c, string(m))
		w.chainDelta(c, &c.subs[len(c.subs)-1], k, p)
		return
	}
	for i := range c.subs {
		s := &c.subs[i]
		if s.match != string(m) {
			continue
		}
		switch {
		case s.last.seq == 0 || seq == s.last.seq+1:
		case seq <= s.last.seq:
			w.st.dups.Add(1)
			return
		default:
			w.st.gaps.Add(1)
			w.st.gapMissing.Add(int64(seq - s.last.seq - 1))
		}
		s.last.seq = seq
		return
	}
	c.subs = append(c.subs, sub{match: string(m), last: seqKey{seq: seq}})
}

// epochOf reads the publisher's epoch of a delta frame (PROTOCOL.md: a short string of
// A-Z a-z 0-9 _ -; a number is taken as its text) as a key, 0 if it has none. Only the
// header is read: a patch may hold a field of that name.
func epochOf(p []byte) uint64 {
	if i := bytes.Index(p, []byte(`"patch":`)); i >= 0 {
		p = p[:i]
	}
	i := bytes.Index(p, []byte(`"epoch":`))
	if i < 0 {
		return 0
	}
	v := p[i+len(`"epoch":`):]
	if len(v) > 0 && v[0] == '"' {
		v = v[1:]
		if j := bytes.IndexByte(v, '"'); j >= 0 {
			return epochKey(string(v[:j]))
		}
		return 0
	}
	j := 0
	for j < len(v) && v[j] >= '0' && v[j] <= '9' {
		j++
	}
	return epochKey(string(v[:j]))
}

// epochKey turns an epoch into the key of seqKey; "" (no epoch) is 0.
func epochKey(epoch string) uint64 {
	if epoch == "" {
		return 0
	}
	return bytesHash([]byte(epoch)) | 1
}

// hello records which gateway c landed on, and whether it is the one its cookie named.
func (w *worker) hello(c *conn, node string) {
	if c.node != "" {
		return
	}
	c.node = node
	w.st.addNode(node, 1)
	if c.cookieNode != "" && node != c.cookieNode {
		w.st.offCookie.Add(1)
	}
}

// centrifuge handles one frame of centrifuge's JSON protocol: newline-separated replies.
func (w *worker) centrifuge(c *conn, p []byte, now int64) {
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		switch {
		case len(line) == 0:
		case string(line) == "{}":
			// A server ping of protocol v2: answer with an empty command.
			w.st.recv[rPing].Add(1)
			w.sendText(c, []byte("{}"))
		case bytes.Contains(line, []byte(`"pub":`)):
			if bytes.Contains(line, []byte(`"type":"delta"`)) {
				w.st.recv[rDelta].Add(1)
				// The publication's data is the crease frame the publisher sent; the
				// check reads that, as crease's clients read the frame itself.
				if data := objectAfter(line, `"data":`); data != nil {
					line = data
				}
				w.delta(c, line, now)
			} else {
				w.st.recv[rEvent].Add(1)
			}
		case bytes.Contains(line, []byte(`"connect":`)):
			w.st.recv[rHello].Add(1)
			if bytes.Contains(line, []byte(`"subs":`)) {
				w.st.recv[rSubscribed].Add(1)
				if w.lg.snaps != nil {
					// Subscribed on the server side at connect: the algorithm starts here.
					w.chainSubscribed(c, c.match)
				}
			}
		case bytes.Contains(line, []byte(`"error":`)):
			w.st.recv[rError].Add(1)
		case bytes.Contains(line, []byte(`"disconnect":`)):
			w.st.bump(&w.st.closes, "push-disconnect")
		default:
			w.st.recv[rOther].Add(1)
		}
	}
}

func strField(p []byte, key string) []byte {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return nil
	}
	p = p[i+len(key):]
	j := bytes.IndexByte(p, '"')
	if j < 0 {
		return nil
	}
	return p[:j]
}

func numField(p []byte, key string) uint64 {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return 0
	}
	var v uint64
	for _, ch := range p[i+len(key):] {
		if ch < '0' || ch > '9' {
			break
		}
		v = v*10 + uint64(ch-'0')
	}
	return v
}

// objectAfter returns the JSON object that follows key in p (strings and escapes taken
// into account), nil if there is none or it is cut.
func objectAfter(p []byte, key string) []byte {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return nil
	}
	p = p[i+len(key):]
	if len(p) == 0 || p[0] != '{' {
		return nil
	}
	depth, inStr, esc := 0, false, false
	for j, ch := range p {
		switch {
		case esc:
			esc = false
		case inStr:
			if ch == '\\' {
				esc = true
			} else if ch == '"' {
				inStr = false
			}
		case ch == '"':
			inStr = true
		case ch == '{':
			depth++
		case ch == '}':
			depth--
			if depth == 0 {
				return p[:j+1]
			}
		}
	}
	return nil
}
