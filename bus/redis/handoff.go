package redis

import (
	"sync"

	"crease/bus"
)

type itemKind uint8

const (
	itemMessage      itemKind = iota // data is a message from the match's channel
	itemSubscribed                   // first subscribe confirmation of a subscription: messages may be lost
	itemResubscribed                 // a later confirmation: messages may be lost
	itemStopped                      // the subscription ended: forget the match
)

type item struct {
	kind  itemKind
	match string
	data  string // the rueidis message, not copied yet
}

// handoff is the bounded queue between the Redis side (rueidis callbacks, which must
// never block: they run on or stall the connection's reader) and the deliver goroutine.
// The deliverer takes the whole pending batch at once, so the bound applies to what is
// waiting, and at most one more batch is in hand.
type handoff struct {
	maxItems, maxBytes int

	mu    sync.Mutex
	items []item
	spare []item
	bytes int
	// full is set by the first drop and cleared when the deliverer takes the batch:
	// while set every message is dropped, so no message that was queued after a drop
	// can overtake the Lost that reports it.
	full bool
	lost map[string]struct{} // matches with dropped messages in this batch window
	wake chan struct{}
}

func newHandoff(maxItems, maxBytes int) *handoff {
	return &handoff{maxItems: maxItems, maxBytes: maxBytes, lost: map[string]struct{}{}, wake: make(chan struct{}, 1)}
}

// pushMessage queues a message; false when it was dropped (the match is then reported
// Lost after the current batch).
func (h *handoff) pushMessage(match, data string) bool {
	h.mu.Lock()
	if h.full || len(h.items) >= h.maxItems || h.bytes+len(data) > h.maxBytes {
		h.full = true
		h.lost[match] = struct{}{}
		h.mu.Unlock()
		h.signal()
		return false
	}
	h.items = append(h.items, item{kind: itemMessage, match: match, data: data})
	h.bytes += len(data)
	h.mu.Unlock()
	h.signal()
	return true
}

// pushMarker queues a subscription event. Markers are always admitted (they are tiny
// and as rare as subscription changes), so the deliverer's view of which matches are
// subscribed never drifts.
func (h *handoff) pushMarker(kind itemKind, match string) {
	h.mu.Lock()
	h.items = append(h.items, item{kind: kind, match: match})
	h.mu.Unlock()
	h.signal()
}

func (h *handoff) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// take swaps out the pending batch and the matches lost in it. The returned slice is
// valid until the next take.
func (h *handoff) take(lost map[string]struct{}) []item {
	h.mu.Lock()
	batch := h.items
	h.items = h.spare[:0]
	h.spare = nil
	h.bytes = 0
	h.full = false
	for m := range h.lost {
		lost[m] = struct{}{}
		delete(h.lost, m)
	}
	h.mu.Unlock()
	return batch
}

// recycle gives a processed batch back for reuse, cleared so the strings can be freed.
func (h *handoff) recycle(batch []item) {
	clear(batch)
	h.mu.Lock()
	if h.spare == nil && cap(batch) <= 4*h.maxItems {
		h.spare = batch[:0]
	}
	h.mu.Unlock()
}

// track is the deliverer's state of one subscribed match.
type track struct {
	last  uint64 // highest delivered seq; 0 = none yet
	fresh bool   // the next delta is not gap-checked: the (re)subscribe was just reported
}

// deliverLoop is the only goroutine that calls the sink. It validates every message,
// keeps the per-match seq order, and reports losses in order with the messages.
func (b *Bus) deliverLoop(sink bus.Sink) {
	defer b.wg.Done()
	tracks := map[string]*track{}
	lost := map[string]struct{}{}
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.q.wake:
		}
		batch := b.q.take(lost)
		for i := range batch {
			if b.ctx.Err() != nil {
				return
			}
			b.process(sink, tracks, &batch[i])
		}
		b.q.recycle(batch)
		for m := range lost {
			sink.Lost(m, bus.ReasonBus)
			b.snaps.lost(m)
			if tr := tracks[m]; tr != nil {
				tr.fresh = true
			}
			delete(lost, m)
		}
	}
}

func (b *Bus) process(sink bus.Sink, tracks map[string]*track, it *item) {
	switch it.kind {
	case itemSubscribed, itemResubscribed:
		// Every confirmation is a possible loss: on the first one, the gateway told its
		// clients `subscribed` before Redis had the subscription, so deltas published
		// in between never reached us; on a later one, rueidis resubscribed after a
		// disconnect (or we did after a slot migration). The seq of the last delivered
		// delta is kept, so rule 1 holds across it.
		tr := tracks[it.match]
		if tr == nil {
			tr = &track{}
			tracks[it.match] = tr
		}
		tr.fresh = true
		if it.kind == itemSubscribed {
			b.snaps.track(it.match)
		}
		sink.Lost(it.match, bus.ReasonBus)
		b.snaps.lost(it.match)
		return
	case itemStopped:
		delete(tracks, it.match)
		b.snaps.untrack(it.match)
		return
	}
	// One copy: the rueidis string becomes the sink's []byte.
	data := []byte(it.data)
	msg, err := bus.Parse(data)
	if err != nil || msg.Match != it.match {
		b.m.invalid.Inc()
		b.log.Debug("invalid bus message dropped", "match", it.match, "err", err, "bytes", len(data))
		return
	}
	if msg.Kind == bus.KindEvent {
		b.m.messages.WithLabelValues("event").Inc()
		sink.Deliver(data)
		return
	}
	tr := tracks[it.match]
	if tr == nil { // cannot happen: the subscribe confirmation precedes messages
		tr = &track{fresh: true}
		tracks[it.match] = tr
	}
	if msg.Seq <= tr.last {
		// Never an older seq again (PROTOCOL.md rule 1), not even after a resync.
		b.m.dropped.WithLabelValues("duplicate").Inc()
		return
	}
	if !tr.fresh && msg.Seq > tr.last+1 {
		sink.Lost(it.match, bus.ReasonGap)
		b.snaps.lost(it.match)
	}
	tr.fresh = false
	tr.last = msg.Seq
	b.snaps.noteSeq(it.match, msg.Seq)
	b.m.messages.WithLabelValues("delta").Inc()
	sink.Deliver(data)
}
