package shard

import (
	"encoding/json"
	"strconv"

	"crease/bus"
	"crease/codec"
	"crease/mergepatch"
	"crease/wire"
)

// Catch-up deltas (PROTOCOL.md `?catchup=1`, `from`): for a connection that opted in,
// the OutboundBudget composes the deltas queued for it, match by match, into one delta
// with `from` (the first one's base) instead of replacing them by `resync`, when the
// RFC 7396 composition is exact (crease/mergepatch); and a replay from history is sent
// as one such delta. The frame is made for one connection (it cannot be shared), so the
// work is bounded: one composition pass per connection per tick, at most CatchUpWork
// bytes of patches per shard per tick, at most CatchUpBytes per composed patch, and the
// composed frames within the Budget. Whatever cannot be composed is shed for `resync`
// as for any connection. All of it runs on the loop.

// Defaults of the catch-up bounds (Options).
const (
	DefaultCatchUpBytes = 16 << 10
	DefaultCatchUpWork  = 256 << 10
)

// The results of crease_catchups_total{source,result}.
const (
	CatchUpComposed   = "composed"    // one delta with `from` replaced the run
	CatchUpInexact    = "inexact"     // the composition cannot express the run: resync (queue) or the deltas as they are (replay)
	CatchUpTooLarge   = "too_large"   // the composed patch is over CatchUpBytes, or the frames over the Budget
	CatchUpOverBudget = "over_budget" // the shard's CatchUpWork for this tick is spent
	CatchUpBroken     = "broken"      // the run is not one contiguous run of one epoch (a resync is queued, or a frame is not a delta)
)

// CatchUpResults lists every result, for metric labels.
var CatchUpResults = []string{CatchUpComposed, CatchUpInexact, CatchUpTooLarge, CatchUpOverBudget, CatchUpBroken}

// catchUpState is the shard's catch-up scratch and accounting.
type catchUpState struct {
	conns    map[*Conn]struct{} // connections that opted in
	composer mergepatch.Composer
	patches  [][]byte
	run      []*Frame
	matches  []string
	buf      []byte
	members  [3][]byte
	work     int   // patch bytes composed during tick workTick
	workTick int64 // s.ticks of work
}

// SetCatchUp records that c opted in to catch-up deltas (?catchup=1).
func (s *Shard) SetCatchUp(c *Conn) {
	if s.cu.conns == nil {
		s.cu.conns = make(map[*Conn]struct{})
	}
	s.cu.conns[c] = struct{}{}
}

// CatchUp reports whether c opted in to catch-up deltas.
func (s *Shard) CatchUp(c *Conn) bool {
	_, ok := s.cu.conns[c]
	return ok
}

// forgetCatchUp drops c's opt-in (Closed).
func (s *Shard) forgetCatchUp(c *Conn) {
	if s.cu.conns != nil {
		delete(s.cu.conns, c)
	}
}

// deltaMembers are the members of a delta frame a composition reads: `from` only ever in
// a catch-up delta made here (bus.Parse refuses a bus delta that carries one, so that no
// connection that did not opt in gets one), every delta's `epoch` (bus.Parse requires it).
var deltaMembers = [3]string{"patch", "epoch", "from"}

// isDelta reports whether f is a delta: a bus delta, or a catch-up delta made here.
func isDelta(f *Frame) bool { return f.Kind == KindDelta || f.Kind == KindCatchUp }

// catchUpQueued composes the deltas queued for a connection that opted in, before the
// budget sheds them. It returns false to leave the lanes as they are until the next
// tick (they were composed this tick already and hold at most twice the Budget: a
// connection is not composed again at every delta); true to go on shedding what is left
// of plain deltas: those of the matches that could not be composed. Past twice the
// Budget it composes again (what it composed plus at least a Budget of new deltas, so
// each byte is composed about twice), within the shard's CatchUpWork.
func (s *Shard) catchUpQueued(q *outQueue) bool {
	if q.catchUpTick == s.ticks+1 && q.bytes <= 2*s.opts.Budget {
		return false
	}
	q.catchUpTick = s.ticks + 1
	matches := s.cu.matches[:0]
	for _, f := range q.state {
		if f.Kind == KindDelta && !contains(matches, f.Match) {
			matches = append(matches, f.Match)
		}
	}
	for _, m := range matches {
		s.composeQueuedMatch(q, m)
	}
	clear(matches)
	s.cu.matches = matches[:0]
	return true
}

// composeQueuedMatch replaces the queued deltas of match by one catch-up delta if it
// can; otherwise it leaves them to be shed.
func (s *Shard) composeQueuedMatch(q *outQueue, match string) {
	if hasResync(q.state, match) {
		return // a resync is queued already: it covers them
	}
	run := s.cu.run[:0]
	for _, f := range q.state {
		if isDelta(f) && f.Match == match {
			run = append(run, f)
		}
	}
	defer func() { clear(run); s.cu.run = run[:0] }()
	var f *Frame
	if len(run) == 1 {
		// One delta: nothing to compose, and small enough to keep rather than resync
		// (a frame of its own, so that the kind does not change for other subscribers).
		f = &Frame{Bytes: run[0].Bytes, Match: match, Seq: run[0].Seq, TS: run[0].TS, Kind: KindCatchUp, Prio: run[0].Prio}
	} else {
		var res string
		if f, res = s.composeRun(run, 0, false); f == nil {
			s.m.catchUp("queue", res)
			return
		}
		s.m.catchUp("queue", CatchUpComposed)
	}
	old := 0
	for _, r := range run {
		old += len(r.Bytes)
	}
	if q.bytes-old+len(f.Bytes) > s.opts.Budget {
		s.m.catchUp("queue", CatchUpTooLarge)
		return
	}
	s.removeFrames(q, func(x *Frame) bool { return isDelta(x) && x.Match == match })
	q.state = append(q.state, f)
	q.bytes += len(f.Bytes)
	s.pending.Add(int64(len(f.Bytes)))
}

// composeRun composes run, the deltas of one match in order, into one delta whose
// `from` is the base of the first (base if given, else the first's own `from` or its
// seq - 1). It returns nil and why not when it cannot.
func (s *Shard) composeRun(run []*Frame, base uint64, haveBase bool) (*Frame, string) {
	if s.cu.workTick != s.ticks {
		s.cu.work, s.cu.workTick = 0, s.ticks
	}
	patches := s.cu.patches[:0]
	defer func() { clear(patches); s.cu.patches = patches[:0] }()
	var epoch []byte
	prio := bus.PrioNormal
	in := 0
	c := &s.cu.composer
	for i, f := range run {
		m := s.cu.members[:]
		if c.Members(framePayload(f.Bytes), deltaMembers[:], m) != nil || m[0] == nil {
			return nil, CatchUpBroken
		}
		patch, ep := m[0], m[1]
		from := f.Seq - 1
		if raw := m[2]; raw != nil {
			n, err := strconv.ParseUint(string(raw), 10, 64)
			if err != nil || n >= f.Seq {
				return nil, CatchUpBroken
			}
			from = n
		}
		switch {
		case i == 0:
			epoch = ep
			if !haveBase {
				base = from
			} else if from != base && !(from < base && base < f.Seq) {
				return nil, CatchUpBroken
			}
		case f.Seq != run[i-1].Seq+1 || from != run[i-1].Seq || string(ep) != string(epoch):
			// Not one contiguous run (a catch-up delta inside one, a hole, another
			// epoch): what it would need is not expressible as one `from`.
			return nil, CatchUpBroken
		}
		if f.Prio == bus.PrioHigh {
			prio = bus.PrioHigh
		}
		patches = append(patches, patch)
		in += len(patch)
	}
	ep := unquote(epoch)
	if !bus.ValidEpoch(ep) {
		return nil, CatchUpBroken // bus.Parse lets no delta without one through
	}
	if s.cu.work+in > s.opts.CatchUpWork {
		return nil, CatchUpOverBudget
	}
	s.cu.work += in
	out, exact, err := c.Compose(s.cu.buf[:0], patches)
	if err != nil {
		return nil, CatchUpBroken
	}
	s.cu.buf = out[:0]
	if !exact {
		return nil, CatchUpInexact
	}
	if len(out) > s.opts.CatchUpBytes {
		return nil, CatchUpTooLarge
	}
	last := run[len(run)-1]
	text := wire.AppendCatchUpDelta(nil, last.Match, ep, last.Seq, base, prio, last.TS, out)
	return &Frame{Bytes: codec.TextFrame(text), Match: last.Match, Seq: last.Seq, TS: last.TS, Kind: KindCatchUp, Prio: prio}, ""
}

// framePayload returns the payload of an unmasked server frame with a whole header.
func framePayload(b []byte) []byte {
	if len(b) < 2 {
		return nil
	}
	switch n := b[1] & 0x7f; {
	case n < 126:
		return b[2:]
	case n == 126 && len(b) >= 4:
		return b[4:]
	case len(b) >= 10:
		return b[10:]
	}
	return nil
}

// unquote decodes a JSON string member ("" for none or not a string).
func unquote(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// queueReplay queues the replayed deltas for c: one catch-up delta from since for a
// connection that opted in, when they compose; else as they are.
func (s *Shard) queueReplay(c *Conn, since Since, a *HistoryAnswer) {
	if len(a.Frames) > 1 && s.CatchUp(c) {
		f, res := s.composeRun(a.Frames, since.Seq, true)
		if f != nil {
			s.m.catchUp("replay", CatchUpComposed)
			s.enqueue(c, f)
			return
		}
		s.m.catchUp("replay", res)
	}
	for _, f := range a.Frames {
		s.enqueue(c, f)
	}
}
