package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Embedded is the in-process bus: snapshot store, publisher and subscriber in one value,
// the default of `crease demo` and of `crease serve` without Redis. A publish applies the
// store rules (PublishResult), stores the snapshot, the journal and the history, and
// hands the frame to the gateway's Tracker under one mutex, so a snapshot at seq N and
// the delta N+1 can never disagree and deltas reach the sink in seq order. The Tracker
// still matters: a re-seed behind the gateway is a gap, and a stream that starts over
// (Forget, then a publisher without memory) a new epoch to announce. Snapshot reads under
// that mutex too, so a snapshot at N is always followed by the delta N+1, and it has no
// answer for Tracker.Served to judge (the Redis bus's can lag its stream).
type Embedded struct {
	mu      sync.Mutex
	hist    HistoryOptions
	matches map[string]*embeddedMatch
	viewers map[string]int64
	results map[PublishResult]uint64
	track   *Tracker // of the sink given to Start; nil before
	closed  bool

	// interestMu is not mu: the gateway calls Subscribe under its interest lock, which
	// its Sink takes too, while a publish calls the Sink under mu.
	interestMu sync.Mutex
	interest   map[string]int
}

type embeddedMatch struct {
	title     string
	epoch     string
	seq       uint64
	raw       []byte // {"match","epoch","seq","state"}
	stateAt   int    // offset of the state in raw
	journal   [][]byte
	hist      [][]byte // frames of epoch, seqs seq-len(hist)+1 .. seq
	histTS    []int64  // their ts, Unix microseconds
	histBytes int
	lastAt    time.Time // when the newest delta was published
}

var (
	_ Bus     = (*Embedded)(nil)
	_ Resumer = (*Embedded)(nil)
)

// NewEmbedded returns an empty in-process bus with the default history bounds.
func NewEmbedded() *Embedded { return NewEmbeddedWith(HistoryOptions{}) }

// NewEmbeddedWith returns an empty in-process bus keeping the history bounded by h.
func NewEmbeddedWith(h HistoryOptions) *Embedded {
	return &Embedded{
		hist:     h.WithDefaults(),
		matches:  make(map[string]*embeddedMatch),
		interest: make(map[string]int),
		viewers:  make(map[string]int64),
		results:  make(map[PublishResult]uint64),
	}
}

// SnapshotJSON is the stored snapshot {"match","epoch","seq","state"}, as every store
// writes it (the text GET /v1/matches/{id} serves).
func SnapshotJSON(match, epoch string, seq uint64, state []byte) []byte {
	raw, _ := snapshotJSON(match, epoch, seq, state)
	return raw
}

// snapshotJSON is SnapshotJSON and the offset of the state in it.
func snapshotJSON(match, epoch string, seq uint64, state []byte) ([]byte, int) {
	raw := make([]byte, 0, len(state)+len(match)+len(epoch)+64)
	raw = append(raw, `{"match":`...)
	raw = strconv.AppendQuote(raw, match)
	raw = append(raw, `,"epoch":`...)
	raw = strconv.AppendQuote(raw, epoch)
	raw = append(raw, `,"seq":`...)
	raw = strconv.AppendUint(raw, seq, 10)
	raw = append(raw, `,"state":`...)
	at := len(raw)
	raw = append(raw, state...)
	return append(raw, '}'), at
}

// CheckDelta validates a delta as every store does before applying it: a valid match id
// and epoch, a seq ≥ 1, a JSON state, and a frame that is the `delta` frame of exactly
// that match, epoch and seq. It returns the parsed frame.
func CheckDelta(d Delta) (Message, error) {
	if !ValidEpoch(d.Epoch) {
		return Message{}, fmt.Errorf("%w: delta %s/%d has a bad epoch %q", ErrInvalidMessage, d.Match, d.Seq, d.Epoch)
	}
	m, err := Parse(d.Frame)
	if err != nil {
		return Message{}, err
	}
	if m.Kind != KindDelta || m.Match != d.Match || m.Seq != d.Seq || m.Epoch != d.Epoch {
		return Message{}, fmt.Errorf("%w: frame (%s %s/%s/%d) does not match delta %s/%s/%d", ErrInvalidMessage,
			kindText(m.Kind), m.Match, m.Epoch, m.Seq, d.Match, d.Epoch, d.Seq)
	}
	if !json.Valid(d.State) {
		return Message{}, fmt.Errorf("%w: state of %s/%d is not JSON", ErrInvalidMessage, d.Match, d.Seq)
	}
	if j := d.Journal; j != nil && (j.From < 0 || j.From > len(j.Entries)) {
		return Message{}, fmt.Errorf("%w: journal of %s/%d: From %d is outside 0..%d", ErrInvalidMessage, d.Match, d.Seq, j.From, len(j.Entries))
	}
	return m, nil
}

func kindText(k Kind) string {
	if k == KindDelta {
		return "delta"
	}
	return "event"
}

// PublishDelta implements Publisher.
func (e *Embedded) PublishDelta(_ context.Context, d Delta) error {
	msg, err := CheckDelta(d)
	if err != nil {
		return err
	}
	raw, at := snapshotJSON(d.Match, d.Epoch, d.Seq, d.State)

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	cur := e.matches[d.Match]
	var res PublishResult
	if cur == nil {
		res = StoreRule(false, "", 0, d.Epoch, d.Seq, false)
	} else {
		res = StoreRule(true, cur.epoch, cur.seq, d.Epoch, d.Seq, false)
	}
	e.results[res]++
	if res == ResultRefused {
		have := "nothing"
		if cur != nil {
			have = cur.epoch + ":" + strconv.FormatUint(cur.seq, 10)
		}
		return fmt.Errorf("%w: match %s holds %s, got %s:%d", ErrSeqConflict, d.Match, have, d.Epoch, d.Seq)
	}
	if cur == nil {
		cur = &embeddedMatch{}
		e.matches[d.Match] = cur
	}
	if res != ResultApplied {
		cur.hist, cur.histTS, cur.histBytes = nil, nil, 0
	}
	if d.Title != "" {
		cur.title = d.Title
	}
	cur.epoch, cur.seq, cur.raw, cur.stateAt = d.Epoch, d.Seq, raw, at
	if j := d.Journal; j != nil {
		// Entries are immutable once published (Journal), so only the tail is copied.
		if from := j.From; res == ResultApplied && from <= len(cur.journal) {
			cur.journal = append(cur.journal[:from:from], j.Entries[from:]...)
		} else {
			cur.journal = append([][]byte(nil), j.Entries...)
		}
	}
	// One copy, shared by the history and the sink (neither modifies it); the publisher
	// may reuse its slice.
	msg.Data = append([]byte(nil), d.Frame...)
	e.appendHistoryLocked(cur, msg.Data, msg.TS)
	e.deliverLocked(msg)
	return nil
}

// appendHistoryLocked appends a frame to the history and trims it to the bounds.
func (e *Embedded) appendHistoryLocked(m *embeddedMatch, frame []byte, ts int64) {
	m.lastAt = time.Now()
	if e.hist.MaxDeltas == 0 {
		return
	}
	m.hist = append(m.hist, frame)
	m.histTS = append(m.histTS, ts)
	m.histBytes += len(frame)
	oldest := ts - e.hist.MaxAge.Microseconds()
	drop := 0
	for drop < len(m.hist) && (len(m.hist)-drop > e.hist.MaxDeltas || m.histBytes > e.hist.MaxBytes || m.histTS[drop] < oldest) {
		m.histBytes -= len(m.hist[drop])
		drop++
	}
	if drop > 0 {
		m.hist = append(m.hist[:0:0], m.hist[drop:]...)
		m.histTS = append(m.histTS[:0:0], m.histTS[drop:]...)
	}
}

// PublishResults returns how many deltas each store rule decided, since the bus was made.
func (e *Embedded) PublishResults() map[PublishResult]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[PublishResult]uint64, len(PublishResults))
	for _, r := range PublishResults {
		out[r] = e.results[r]
	}
	return out
}

// History implements History. The embedded store lives as long as the process, so its
// history is dropped after MaxAge of silence only when it is read.
func (e *Embedded) History(_ context.Context, match, epoch string, after uint64) ([]Message, bool, error) {
	e.mu.Lock()
	m := e.matches[match]
	if m == nil {
		e.mu.Unlock()
		return nil, false, ErrUnknownMatch
	}
	if m.epoch != epoch || after > m.seq {
		e.mu.Unlock()
		return nil, false, nil
	}
	if after == m.seq {
		e.mu.Unlock()
		return nil, true, nil
	}
	first := m.seq - uint64(len(m.hist)) + 1
	if len(m.hist) == 0 || after+1 < first || time.Since(m.lastAt) > e.hist.MaxAge {
		e.mu.Unlock()
		return nil, false, nil
	}
	frames := m.hist[after+1-first:]
	out := make([]Message, 0, len(frames))
	for _, f := range frames {
		msg, err := Parse(f) // stored frames were parsed when published
		if err != nil {
			e.mu.Unlock()
			return nil, false, err
		}
		out = append(out, msg)
	}
	e.mu.Unlock()
	return out, true, nil
}

// Stored implements Resumer.
func (e *Embedded) Stored(_ context.Context, match string) (Stored, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m, snap, err := e.snapshotLocked(match)
	if err != nil {
		return Stored{}, err
	}
	s := Stored{Snapshot: snap, State: m.raw[m.stateAt : len(m.raw)-1]}
	if m.journal != nil {
		s.Journal = append([][]byte(nil), m.journal...)
	}
	return s, nil
}

// PublishEvent implements Publisher.
func (e *Embedded) PublishEvent(_ context.Context, match string, frame []byte) error {
	m, err := Parse(frame)
	if err != nil {
		return err
	}
	if m.Kind != KindEvent || m.Match != match {
		return fmt.Errorf("%w: frame is not an event of %s", ErrInvalidMessage, match)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	// The sink owns what it is given; the publisher may reuse its slice.
	m.Data = append([]byte(nil), frame...)
	e.deliverLocked(m)
	return nil
}

// deliverLocked hands every message to the sink, interest or not: in-process there is
// no subscription to set up, and the gateway filters by its own interest, so a
// subscription that is just being declared can never miss a frame.
func (e *Embedded) deliverLocked(msg Message) {
	if e.track != nil {
		e.track.Message(msg)
	}
}

// Forget drops everything the store holds of match (snapshot, journal, history), as a
// Redis that lost its data: the next delta starts a new epoch at seq 1, or re-seeds the
// store from a publisher that kept the state (PublishResult). The gateway side keeps
// what it delivered, so a new epoch is announced to its subscribers. It reports whether
// the store held the match.
func (e *Embedded) Forget(match string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.matches[match]
	delete(e.matches, match)
	delete(e.viewers, match)
	return ok
}

// Snapshot implements Snapshots.
func (e *Embedded) Snapshot(_ context.Context, match string) (Snapshot, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, s, err := e.snapshotLocked(match)
	return s, err
}

// snapshotLocked is match as the store holds it and its snapshot; e.mu is held.
func (e *Embedded) snapshotLocked(match string) (*embeddedMatch, Snapshot, error) {
	m := e.matches[match]
	if m == nil {
		return nil, Snapshot{}, ErrUnknownMatch
	}
	return m, Snapshot{Match: match, Epoch: m.epoch, Seq: m.seq, Raw: m.raw}, nil
}

// Matches implements Snapshots.
func (e *Embedded) Matches(_ context.Context) ([]MatchInfo, error) {
	e.mu.Lock()
	out := make([]MatchInfo, 0, len(e.matches))
	for id, m := range e.matches {
		out = append(out, MatchInfo{Match: id, Title: m.title, Epoch: m.epoch, Seq: m.seq, Viewers: e.viewers[id]})
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Match < out[j].Match })
	return out, nil
}

// SetViewers records the gateway's subscriber count per match (one gateway in embedded
// mode, so its counts are the totals).
func (e *Embedded) SetViewers(counts map[string]int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.viewers)
	for k, v := range counts {
		e.viewers[k] = int64(v)
	}
}

// Start implements Subscriber.
func (e *Embedded) Start(_ context.Context, sink Sink) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.track = NewTracker(sink)
	return nil
}

// Subscribe implements Subscriber. It only counts: everything is delivered anyway.
func (e *Embedded) Subscribe(match string) {
	e.interestMu.Lock()
	e.interest[match]++
	e.interestMu.Unlock()
}

// Unsubscribe implements Subscriber.
func (e *Embedded) Unsubscribe(match string) {
	e.interestMu.Lock()
	if e.interest[match] <= 1 {
		delete(e.interest, match)
	} else {
		e.interest[match]--
	}
	e.interestMu.Unlock()
}

// Subscribed reports whether the gateway has declared interest in match (for tests).
func (e *Embedded) Subscribed(match string) bool {
	e.interestMu.Lock()
	defer e.interestMu.Unlock()
	return e.interest[match] > 0
}

// Ready implements Subscriber: the in-process bus is always up.
func (e *Embedded) Ready() bool { return true }

// Close implements Subscriber.
func (e *Embedded) Close() error {
	e.mu.Lock()
	e.closed = true
	e.track = nil
	e.mu.Unlock()
	return nil
}
