package bus

import (
	"cmp"
	"slices"
	"sync"
)

// DropReason says why a message that reached the gateway's side of a bus was not
// delivered. It is a metric label.
type DropReason string

// The reasons a Tracker or a bus drops a message.
const (
	DropDuplicate DropReason = "duplicate" // a delta at or below the last seq delivered of its epoch
	DropOldEpoch  DropReason = "old_epoch" // a delta of an epoch older than one already delivered
	DropOverflow  DropReason = "overflow"  // the bus's hand-off queue was full; a Lost(bus) follows
	DropInvalid   DropReason = "invalid"   // not a valid frame of its channel's match
)

// DropReasons lists every DropReason, for metric labels.
var DropReasons = []DropReason{DropDuplicate, DropOldEpoch, DropOverflow, DropInvalid}

// retiredEpochs bounds the older epochs a Tracker remembers per match. An epoch changes
// only when a stream starts over without its history, so a handful covers any number of
// deltas still in flight from the streams before.
const retiredEpochs = 8

// Tracker is a gateway's one record of where each match's stream is: per match, the
// epoch and the last seq it delivered, and the epochs before it. Every bus hands what it
// receives to its Tracker, which calls the Sink: each message once, parsed, in the order
// of PROTOCOL.md's delivery rule 1 (per epoch), with Lost before the first delta after a
// hole (gap), before the first delta of a new epoch (epoch), and wherever the bus says
// messages may have been lost. A delta at or below the last seq of its epoch, or of an
// older epoch, is dropped (Sink.Dropped). Events pass through untracked.
//
// The first delta after a Lost is not gap-checked against the last seq delivered (the
// loss was reported already: its subscribers refetch the snapshot); the last seq is kept
// across it, so rule 1 holds across a resync. It is checked against the snapshots served
// since the loss instead (Served: a snapshot, or the stored seq a history replay ends
// at): subscribers that refetched (or recovered) hold one of them, and a first delta
// beyond the oldest of them + 1 would leave them a hole nobody announced (a store that
// lags the stream, as the old primary of a split brain), so Lost(gap) comes before it,
// or Lost(epoch) when one of them is of another epoch.
//
// Concurrency: the methods that change the stream (Message, Lost, Dropped, Forget) must
// be called by one goroutine at a time, in the order the bus received things: a bus's
// deliverer goroutine, or its publishers under its lock. Each updates the state under
// the Tracker's mutex and calls the Sink after releasing it, so that Position, Behind
// and anything else reading the state (a snapshot cache, on HTTP goroutines) already
// sees a change when the Sink, and through it a client, hears of it. Served may be
// called from any goroutine (HTTP handlers): it only updates the state, under the mutex.
type Tracker struct {
	sink Sink

	mu      sync.Mutex
	matches map[string]*tracked
	gen     uint64 // the last Gen handed out, over all matches
}

type tracked struct {
	epoch   string   // of the last delta delivered, or of a snapshot served; "" none yet
	last    uint64   // seq of the last delta delivered of epoch; 0 none
	fresh   bool     // a loss was reported since last: the next delta is not gap-checked
	gen     uint64   // changed by every delivery and every loss (never reused: Tracker.gen)
	retired []string // older epochs, oldest first; replaced, never appended in place

	lostGen uint64      // gen given by the latest loss (or by the record's making)
	served  servedSince // while fresh: the snapshots served since the latest loss
	resumed struct {    // the first delta delivered after the latest loss; seq 0 none yet
		epoch string
		seq   uint64
	}
}

// servedSince sums up the snapshots served to requests sent after a loss, before the
// first delta after it: what the subscribers that refetched may hold.
type servedSince struct {
	any   bool
	epoch string // "": a store without epochs, or nothing stored (it continues any stream)
	seq   uint64 // the lowest seq served of epoch (0: nothing stored, the state before seq 1)
	mixed bool   // snapshots of two epochs were served
}

// add records a snapshot at (epoch, seq).
func (s *servedSince) add(epoch string, seq uint64) {
	switch {
	case !s.any:
		*s = servedSince{any: true, epoch: epoch, seq: seq}
	case !sameEpoch(s.epoch, epoch):
		s.mixed = true
	default:
		s.epoch, s.seq = cmp.Or(s.epoch, epoch), min(s.seq, seq)
	}
}

// holes says what the first delta after a loss, msg, must be preceded by for the
// subscribers holding one of the snapshots served since: Lost(epoch) when one of them is
// of another epoch (a new stream to them), Lost(gap) when msg is beyond the oldest + 1;
// "" nothing.
func (s *servedSince) holes(msg Message) ResyncReason {
	switch {
	case !s.any:
		return ""
	case s.mixed || !sameEpoch(s.epoch, msg.Epoch):
		return ReasonEpoch
	case msg.Seq > s.seq+1:
		return ReasonGap
	}
	return ""
}

// NewTracker returns a Tracker that calls sink.
func NewTracker(sink Sink) *Tracker {
	return &Tracker{sink: sink, matches: make(map[string]*tracked)}
}

// sameEpoch reports whether two epochs name one stream. "" is no epoch known: nothing
// delivered or stored yet, or a store written before epochs existed (its snapshot has
// none); it continues whatever stream it is compared with. Every delta a bus delivers
// has one (Parse refuses a delta without).
func sameEpoch(a, b string) bool { return a == "" || b == "" || a == b }

// get returns the record of match, making a fresh one (the next delta is not
// gap-checked: a bus tracks a match from its subscription, whose Lost comes first).
func (t *Tracker) get(match string) *tracked {
	m := t.matches[match]
	if m == nil {
		m = &tracked{fresh: true}
		t.bump(m)
		m.lostGen = m.gen
		t.matches[match] = m
	}
	return m
}

// Message hands over a valid message: an event is delivered; a delta is delivered,
// preceded by Lost(gap) or Lost(epoch) when it must be, or dropped.
func (t *Tracker) Message(msg Message) {
	if msg.Kind != KindDelta {
		t.sink.Deliver(msg)
		return
	}
	var lost ResyncReason
	t.mu.Lock()
	m := t.get(msg.Match)
	resuming := m.fresh // the first delta after a loss
	switch {
	case !sameEpoch(m.epoch, msg.Epoch) && slices.Contains(m.retired, msg.Epoch):
		t.mu.Unlock()
		t.sink.Dropped(msg.Match, DropOldEpoch)
		return
	case !sameEpoch(m.epoch, msg.Epoch):
		// A new stream (PROTOCOL.md rule 1): its subscribers hold another epoch's state
		// and must refetch before its first delta. Its seqs start over.
		m.retire(msg.Epoch)
		lost = ReasonEpoch
	case m.last > 0 && msg.Seq <= m.last:
		t.mu.Unlock()
		t.sink.Dropped(msg.Match, DropDuplicate)
		return
	case !m.fresh && msg.Seq > m.last+1:
		lost = ReasonGap
	case m.fresh:
		lost = m.served.holes(msg)
	}
	if resuming {
		m.resumed.epoch, m.resumed.seq = msg.Epoch, msg.Seq
		m.served = servedSince{}
	}
	if msg.Epoch != "" {
		m.epoch = msg.Epoch
	}
	m.last, m.fresh = msg.Seq, false
	t.bump(m)
	t.mu.Unlock()
	if lost != "" {
		t.sink.Lost(msg.Match, lost)
	}
	t.sink.Deliver(msg)
}

// retire makes epoch the current one, remembering the one before.
func (m *tracked) retire(epoch string) {
	if m.epoch != "" && m.epoch != epoch {
		r := append(make([]string, 0, min(len(m.retired)+1, retiredEpochs)), m.retired[max(0, len(m.retired)+1-retiredEpochs):]...)
		m.retired = append(r, m.epoch)
	}
	m.epoch, m.last, m.fresh = epoch, 0, true
}

// bump gives m a Gen never given out before, so that a match tracked again after Forget
// cannot meet a Gen of its earlier record.
func (t *Tracker) bump(m *tracked) {
	t.gen++
	m.gen = t.gen
}

// Lost says that messages of match may have been lost (a (re)subscription, an overflow,
// a broken link): the Sink hears Lost(match, reason) and the next delta is not
// gap-checked. A bus starts tracking a match with it (its subscription's Lost(bus)).
func (t *Tracker) Lost(match string, reason ResyncReason) {
	t.mu.Lock()
	m := t.get(match)
	m.fresh = true
	t.bump(m)
	m.lostGen, m.resumed.seq = m.gen, 0
	t.mu.Unlock()
	t.sink.Lost(match, reason)
}

// Dropped reports a message the bus dropped before it could be tracked (an overflow of
// its queue, an invalid frame).
func (t *Tracker) Dropped(match string, reason DropReason) { t.sink.Dropped(match, reason) }

// Served decides whether a snapshot of match may be served to the requests of one read
// of the store: at is what Position said just before the read was sent, and has false
// means the store holds nothing (served as "not started", the state before seq 1). It
// returns false when the snapshot is behind what was delivered, to be answered "store
// behind" (503, retried) instead:
//   - at.Behind: older than a delta delivered before the read was sent;
//   - the first delta after the loss that preceded the read was delivered while the read
//     was out, beyond the snapshot + 1: its subscribers would miss the deltas between.
//
// Otherwise, when nothing was delivered since the loss that preceded the read, the
// snapshot is recorded: the first delta after the loss is gap-checked against the
// oldest recorded (see Tracker). Before any delta of the match is delivered (just
// subscribed) the epoch is noted as well, so that a later first delta of another epoch
// is announced to subscribers that hold this snapshot. Only deltas move the stream on
// (a snapshot of an unknown epoch may be a new stream, or a lagging store's old one).
// An untracked match, or a read sent before the latest loss (its requesters hear of the
// loss after their request, and refetch), changes nothing. It calls nothing.
func (t *Tracker) Served(match string, at Position, has bool, epoch string, seq uint64) bool {
	if at.Behind(has, epoch, seq) {
		return false
	}
	if !has {
		epoch, seq = "", 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.matches[match]
	if m == nil || !at.fresh || at.Gen != m.lostGen {
		return true // untracked, or the read was not sent after the latest loss
	}
	if !m.fresh {
		// The stream resumed while the read was out.
		r := m.resumed
		return !sameEpoch(r.epoch, epoch) || r.seq <= seq+1
	}
	m.served.add(epoch, seq)
	if epoch != "" && m.epoch == "" && !slices.Contains(m.retired, epoch) {
		m.epoch = epoch
	}
	return true
}

// Forget drops the record of match: the bus no longer receives it.
func (t *Tracker) Forget(match string) {
	t.mu.Lock()
	delete(t.matches, match)
	t.mu.Unlock()
}

// Position is what a Tracker knows of one match's stream.
type Position struct {
	Epoch string // the current epoch; "" none known yet
	Seq   uint64 // the last seq delivered of Epoch; 0 none
	// Current: no loss was reported since Seq was delivered, so (Epoch, Seq) is the
	// newest position published, as far as this gateway can know.
	Current bool
	// Gen changes with every delivery and every loss: a snapshot read while it stayed
	// the same is as current as the stream allows.
	Gen     uint64
	retired []string
	fresh   bool // a loss was reported since Seq was delivered (or nothing delivered yet)
}

// Position returns what is known of match; false when it is not tracked.
func (t *Tracker) Position(match string) (Position, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.matches[match]
	if m == nil {
		return Position{}, false
	}
	return Position{Epoch: m.epoch, Seq: m.last, Current: !m.fresh && m.last > 0, Gen: m.gen, retired: m.retired, fresh: m.fresh}, true
}

// Behind reports whether a stored snapshot at (epoch, seq), or no snapshot at all (has
// false), is behind what was delivered up to p: a snapshot of p's epoch below p.Seq, a
// snapshot of an epoch older than p's, or nothing stored of a match whose deltas were
// delivered. The store lost data (a restart without persistence, a failover to a lagging
// replica) and its publisher has not re-seeded it yet. Positions are compared only within
// one epoch: a new epoch's seqs start over.
func (p Position) Behind(has bool, epoch string, seq uint64) bool {
	switch {
	case !has:
		return p.Seq > 0 || len(p.retired) > 0
	case !sameEpoch(epoch, p.Epoch):
		return slices.Contains(p.retired, epoch)
	}
	return seq < p.Seq
}

// Older reports whether epoch is one that p's stream has left.
func (p Position) Older(epoch string) bool { return slices.Contains(p.retired, epoch) }
