package main

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"sync"
)

// With --snapshot-url every subscription follows the client algorithm of PROTOCOL.md and
// is checked while it does: after `subscribed` it asks for the REST snapshot and buffers
// deltas; the snapshot's seq is the state it holds; later deltas must follow it one by
// one (older ones are stale and skipped); a `resync` asks for a snapshot again. A
// subscription is in error when the gateway breaks a delivery rule (a duplicate or older
// seq, a gap without `resync`) or when what it received differs from what every other
// connection of this process received (the same seq as other bytes, a snapshot whose
// state is not the state the deltas lead to).
//
// Checking every connection's state by applying every patch to it would cost the load
// generator more than the gateway's delivery. It is not needed: a subscription's state
// is its snapshot plus the deltas after it, so when its snapshot is the process's
// reference state at that seq and each of its deltas is byte for byte the reference
// delta of its seq, its state is the reference state at its last seq. The reference
// (matchRef) applies each patch once per process, and the final check compares it with
// the final snapshot.

// seqKey names one delta or state: the publisher's epoch (0 when the frames carry none)
// and the seq.
type seqKey struct{ epoch, seq uint64 }

// matchRef is what this process knows of one match, shared by its workers: the hash of
// each delta frame seen, the reference state and the hash of the state at each seq.
type matchRef struct {
	mu      sync.Mutex
	frames  map[seqKey]uint64
	patches map[seqKey]json.RawMessage // patches after cur, not applied yet
	states  map[seqKey]uint64
	cur     any
	curKey  seqKey
	have    bool // cur holds a state
	applied int64
	bad     int64
}

func newMatchRef() *matchRef {
	return &matchRef{frames: map[seqKey]uint64{}, patches: map[seqKey]json.RawMessage{}, states: map[seqKey]uint64{}}
}

// delta records the frame of k (its hash h) and reports whether it differs from the
// frame this process first saw for k. The first frame of a seq also feeds the
// reference state.
func (r *matchRef) delta(k seqKey, h uint64, frame []byte) (divergent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seen, differs := record(r.frames, k, h); seen {
		return differs
	}
	// Keep every patch past the reference, and all of them before the first snapshot:
	// a snapshot may land behind deltas already seen.
	if r.ahead(k) {
		if p, ok := patchOf(frame); ok {
			r.patches[k] = p
			if r.have {
				r.advance()
			}
		} else {
			r.bad++
		}
	}
	return false
}

// record keeps h as the hash of k in m unless m has one for k already (seen), and then
// reports whether h differs from it.
func record(m map[seqKey]uint64, k seqKey, h uint64) (seen, differs bool) {
	if first, ok := m[k]; ok {
		return true, first != h
	}
	m[k] = h
	return false, false
}

// ahead reports whether k is past the reference state (or there is none yet). r.mu is
// held.
func (r *matchRef) ahead(k seqKey) bool {
	return !r.have || k.epoch != r.curKey.epoch || k.seq > r.curKey.seq
}

// advance applies the waiting patches that follow the reference state.
func (r *matchRef) advance() {
	for {
		next := seqKey{r.curKey.epoch, r.curKey.seq + 1}
		p, ok := r.patches[next]
		if !ok {
			return
		}
		delete(r.patches, next)
		var patch any
		if err := decodeJSON(p, &patch); err != nil {
			r.bad++
			return
		}
		r.cur = mergePatch(r.cur, patch)
		r.curKey = next
		r.states[next] = canonHash(r.cur)
		r.applied++
	}
}

// snapshot checks a snapshot's state (hash h) against the reference state at k, and
// reports a mismatch. A snapshot past the reference (or the first one) becomes the
// reference; the patches seen after it are applied.
func (r *matchRef) snapshot(k seqKey, state any, h uint64) (mismatch bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seen, differs := record(r.states, k, h); seen {
		return differs
	}
	if r.ahead(k) {
		r.cur, r.curKey, r.have = state, k, true
		for pk := range r.patches {
			if pk.epoch != k.epoch || pk.seq <= k.seq {
				delete(r.patches, pk)
			}
		}
		r.advance()
	}
	return false
}

// stateAt returns the hash of the reference state at k, if known.
func (r *matchRef) stateAt(k seqKey) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.states[k]
	return h, ok
}

func (r *matchRef) counts() (applied, bad int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied, r.bad
}

// patchOf returns the JSON value of a delta frame's "patch" field.
func patchOf(frame []byte) (json.RawMessage, bool) {
	var f struct {
		Patch json.RawMessage `json:"patch"`
	}
	if json.Unmarshal(frame, &f) != nil || len(f.Patch) == 0 || f.Patch[0] != '{' {
		return nil, false
	}
	return f.Patch, true
}

// decodeJSON decodes keeping numbers as written, so that a state and its patches hash
// alike whatever their magnitude.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// mergePatch applies an RFC 7396 JSON Merge Patch to target and returns the result; it
// may modify target.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}

// canonHash hashes v's canonical JSON (encoding/json sorts object keys).
func canonHash(v any) uint64 {
	b, _ := json.Marshal(v)
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}

func bytesHash(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}

// ref returns the process's reference of match.
func (lg *loadgen) ref(match string) *matchRef {
	lg.refsMu.Lock()
	defer lg.refsMu.Unlock()
	r := lg.refs[match]
	if r == nil {
		r = newMatchRef()
		lg.refs[match] = r
	}
	return r
}

// chainSubscribed starts the algorithm for a new subscription: ask for the snapshot.
func (w *worker) chainSubscribed(c *conn, match string) {
	for i := range c.subs {
		if c.subs[i].match == match {
			return // subscribed again: counts once
		}
	}
	c.subs = append(c.subs, sub{match: match, ref: w.lg.ref(match), waiting: true})
	w.askSnapshot(c, len(c.subs)-1)
}

// chainDelta handles a delta of subscription s (seq k) in the algorithm.
func (w *worker) chainDelta(c *conn, s *sub, k seqKey, frame []byte) {
	h := bytesHash(frame)
	if w.lastRef != s.ref || w.lastKey != k || w.lastHash != h {
		if s.ref.delta(k, h, frame) {
			w.chain.divergent.Add(1)
			s.bad = true
		} else {
			// Most deltas of a seq reach one worker's connections in a row: check the
			// reference once for all of them.
			w.lastRef, w.lastKey, w.lastHash = s.ref, k, h
		}
	}
	// The gateway's rules: strictly increasing, and no gap unless a resync came first.
	if s.seen != (seqKey{}) && k.epoch == s.seen.epoch {
		switch {
		case k.seq <= s.seen.seq:
			w.st.dups.Add(1)
			return
		case k.seq > s.seen.seq+1 && !s.resynced:
			w.st.gaps.Add(1)
			w.st.gapMissing.Add(int64(k.seq - s.seen.seq - 1))
		}
	}
	s.seen, s.resynced = k, false
	if s.waiting {
		if s.bufFirst == (seqKey{}) || k.epoch != s.bufFirst.epoch {
			s.bufFirst = k
		}
		s.bufLast = k
		return
	}
	switch {
	case k.epoch != s.last.epoch || k.seq > s.last.seq+1:
		// A gap between the state held and this delta: the algorithm takes it as a
		// resync. (Past a snapshot with no delta yet it is also the gateway's gap.)
		if s.fresh && k.epoch == s.last.epoch {
			w.st.gaps.Add(1)
			w.st.gapMissing.Add(int64(k.seq - s.last.seq - 1))
		}
		s.waiting, s.bufFirst, s.bufLast = true, k, k
		w.askSnapshot(c, w.subIndex(c, s))
	case k.seq == s.last.seq+1:
		s.last = k
	default:
		// Stale: published before the snapshot that was taken; skip it.
	}
	s.fresh = false
}

// chainResync: fetch the snapshot again, then go on.
func (w *worker) chainResync(c *conn, match string) {
	for i := range c.subs {
		s := &c.subs[i]
		if s.match != match {
			continue
		}
		s.resynced = true
		if !s.waiting {
			s.waiting, s.bufFirst, s.bufLast = true, seqKey{}, seqKey{}
			w.askSnapshot(c, i)
		}
	}
}

func (w *worker) subIndex(c *conn, s *sub) int {
	for i := range c.subs {
		if &c.subs[i] == s {
			return i
		}
	}
	return -1
}

// chainSnapshot applies a snapshot answer to the subscription that asked for it.
func (w *worker) chainSnapshot(r snapResult) {
	c := r.c
	if c.gen != r.gen || c.state != stOpen || r.sub >= len(c.subs) {
		return // the connection closed (and maybe reopened) since it asked
	}
	s := &c.subs[r.sub]
	if !s.waiting {
		return
	}
	if r.err {
		w.askSnapshot(c, r.sub)
		return
	}
	k := seqKey{r.epoch, r.seq}
	if s.ref.snapshot(k, r.state, r.hash) {
		w.chain.mismatch.Add(1)
		s.bad = true
	}
	if s.bufFirst != (seqKey{}) && s.bufFirst.epoch == k.epoch && s.bufFirst.seq > k.seq+1 {
		// The snapshot is older than the first delta buffered (a snapshot cache): the
		// deltas in between are in neither. Ask again.
		w.chain.refetches.Add(1)
		w.askSnapshot(c, r.sub)
		return
	}
	s.waiting, s.asks = false, 0
	s.last, s.fresh = k, s.bufFirst == (seqKey{})
	if s.bufLast.epoch == k.epoch && s.bufLast.seq > k.seq {
		s.last = s.bufLast
	}
	s.bufFirst, s.bufLast = seqKey{}, seqKey{}
}

// maxSnapshotAsks bounds the requests of one subscription without a usable answer; past
// it the subscription gives up and stays waiting, which the final check reports.
const maxSnapshotAsks = 100

func (w *worker) askSnapshot(c *conn, i int) {
	s := &c.subs[i]
	if s.asks++; s.asks > maxSnapshotAsks {
		w.chain.gaveUp.Add(1)
		return
	}
	r := snapReq{c: c, gen: c.gen, sub: i, match: s.match, w: w}
	if len(w.asks) == 0 && w.lg.snaps.offer(r) {
		return
	}
	// The queue is full: keep the request here. A worker blocked on the queue would
	// read none of its sockets, answer no ping, and take no answer off snapq, on which
	// the snapshotters themselves then block: the whole process stalled and the
	// gateways closed its connections as idle (4000).
	w.asks = append(w.asks, r)
}

// flushAsks moves the requests kept by askSnapshot into the queue, in order, as far as
// it takes them, dropping those of connections closed since.
func (w *worker) flushAsks() {
	kept := w.asks[:0]
	for i, r := range w.asks {
		if gen, ok := w.open[r.c]; !ok || gen != r.gen {
			continue
		}
		if !w.lg.snaps.offer(r) {
			kept = append(kept, w.asks[i:]...)
			break
		}
	}
	clear(w.asks[len(kept):])
	w.asks = kept
}

// recountFinal counts this worker's open subscriptions against the final snapshot.
func (w *worker) recountFinal(fk seqKey) {
	var equal, behind, waiting, tainted int64
	for c := range w.open {
		if len(c.subs) == 0 {
			waiting++
			continue
		}
		for i := range c.subs {
			s := &c.subs[i]
			switch {
			case s.bad:
				tainted++
			case s.waiting:
				waiting++
			case s.last == fk:
				equal++
			default:
				behind++
			}
		}
	}
	w.chain.equal.Store(equal)
	w.chain.behind.Store(behind)
	w.chain.waiting.Store(waiting)
	w.chain.tainted.Store(tainted)
}
