package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
)

// Embedded is the in-process bus: snapshot store, publisher and subscriber in one value,
// the default of `crease demo` and of `crease serve` without Redis. A publish stores the
// snapshot, advances the seq and hands the frame to the sink under one mutex, so a
// snapshot at seq N and the delta N+1 can never disagree and deltas reach the sink in
// seq order.
type Embedded struct {
	mu       sync.Mutex
	matches  map[string]*embeddedMatch
	interest map[string]int
	viewers  map[string]int64
	sink     Sink
	closed   bool
}

type embeddedMatch struct {
	title string
	seq   uint64
	raw   []byte // {"match","seq","state"}
}

var _ Bus = (*Embedded)(nil)

// NewEmbedded returns an empty in-process bus.
func NewEmbedded() *Embedded {
	return &Embedded{
		matches:  make(map[string]*embeddedMatch),
		interest: make(map[string]int),
		viewers:  make(map[string]int64),
	}
}

// PublishDelta implements Publisher.
func (e *Embedded) PublishDelta(_ context.Context, d Delta) error {
	m, err := Parse(d.Frame)
	if err != nil {
		return err
	}
	if m.Kind != KindDelta || m.Match != d.Match || m.Seq != d.Seq {
		return fmt.Errorf("%w: frame does not match delta %s seq %d", ErrInvalidMessage, d.Match, d.Seq)
	}
	if !json.Valid(d.State) {
		return fmt.Errorf("%w: state of %s seq %d is not JSON", ErrInvalidMessage, d.Match, d.Seq)
	}
	raw := make([]byte, 0, len(d.State)+len(d.Match)+48)
	raw = append(raw, `{"match":`...)
	raw = strconv.AppendQuote(raw, d.Match)
	raw = append(raw, `,"seq":`...)
	raw = strconv.AppendUint(raw, d.Seq, 10)
	raw = append(raw, `,"state":`...)
	raw = append(raw, d.State...)
	raw = append(raw, '}')

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	cur := e.matches[d.Match]
	var have uint64
	if cur != nil {
		have = cur.seq
	}
	if d.Seq != have+1 {
		return fmt.Errorf("%w: match %s has seq %d, got %d", ErrSeqConflict, d.Match, have, d.Seq)
	}
	if cur == nil {
		cur = &embeddedMatch{}
		e.matches[d.Match] = cur
	}
	if d.Title != "" {
		cur.title = d.Title
	}
	cur.seq = d.Seq
	cur.raw = raw
	e.deliverLocked(d.Match, d.Frame)
	return nil
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
	e.deliverLocked(match, frame)
	return nil
}

// deliverLocked hands every message to the sink, interest or not: in-process there is
// no subscription to set up, and the gateway filters by its own interest, so a
// subscription that is just being declared can never miss a frame.
func (e *Embedded) deliverLocked(match string, frame []byte) {
	if e.sink == nil {
		return
	}
	// The sink owns what it is given; the publisher may reuse its slice.
	e.sink.Deliver(append([]byte(nil), frame...))
}

// Snapshot implements Snapshots.
func (e *Embedded) Snapshot(_ context.Context, match string) (Snapshot, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.matches[match]
	if m == nil {
		return Snapshot{}, ErrUnknownMatch
	}
	return Snapshot{Match: match, Seq: m.seq, Raw: m.raw}, nil
}

// Matches implements Snapshots.
func (e *Embedded) Matches(_ context.Context) ([]MatchInfo, error) {
	e.mu.Lock()
	out := make([]MatchInfo, 0, len(e.matches))
	for id, m := range e.matches {
		out = append(out, MatchInfo{Match: id, Title: m.title, Seq: m.seq, Viewers: e.viewers[id]})
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
	e.sink = sink
	return nil
}

// Subscribe implements Subscriber.
func (e *Embedded) Subscribe(match string) {
	e.mu.Lock()
	e.interest[match]++
	e.mu.Unlock()
}

// Unsubscribe implements Subscriber.
func (e *Embedded) Unsubscribe(match string) {
	e.mu.Lock()
	if e.interest[match] <= 1 {
		delete(e.interest, match)
	} else {
		e.interest[match]--
	}
	e.mu.Unlock()
}

// Subscribed reports whether the bus currently forwards match (for tests).
func (e *Embedded) Subscribed(match string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.interest[match] > 0
}

// Ready implements Subscriber: the in-process bus is always up.
func (e *Embedded) Ready() bool { return true }

// Close implements Subscriber.
func (e *Embedded) Close() error {
	e.mu.Lock()
	e.closed = true
	e.sink = nil
	e.mu.Unlock()
	return nil
}
