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
	lost map[string]int // dropped messages per match in this batch window
	wake chan struct{}
}

func newHandoff(maxItems, maxBytes int) *handoff {
	return &handoff{maxItems: maxItems, maxBytes: maxBytes, lost: map[string]int{}, wake: make(chan struct{}, 1)}
}

// pushMessage queues a message; false when it was dropped (the match is then reported
// Lost after the current batch).
func (h *handoff) pushMessage(match, data string) bool {
	h.mu.Lock()
	if h.full || len(h.items) >= h.maxItems || h.bytes+len(data) > h.maxBytes {
		h.full = true
		h.lost[match]++
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

// take swaps out the pending batch and adds the messages dropped in it to lost, by
// match. The returned slice is valid until the next take.
func (h *handoff) take(lost map[string]int) []item {
	h.mu.Lock()
	batch := h.items
	h.items = h.spare[:0]
	h.spare = nil
	h.bytes = 0
	h.full = false
	for m, n := range h.lost {
		lost[m] += n
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

// deliverLoop is the only goroutine that calls the Tracker, and through it the sink. It
// validates every message and reports losses in order with the messages.
func (b *Bus) deliverLoop(tr *bus.Tracker) {
	defer b.wg.Done()
	lost := map[string]int{}
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
			b.process(tr, &batch[i])
		}
		b.q.recycle(batch)
		for m, n := range lost {
			for range n {
				tr.Dropped(m, bus.DropOverflow)
			}
			tr.Lost(m, bus.ReasonBus)
			delete(lost, m)
		}
	}
}

func (b *Bus) process(tr *bus.Tracker, it *item) {
	switch it.kind {
	case itemSubscribed, itemResubscribed:
		// Every confirmation is a possible loss: on the first one, the gateway told its
		// clients `subscribed` before Redis had the subscription, so deltas published
		// in between never reached us; on a later one, rueidis resubscribed after a
		// disconnect (or we did after a slot migration). The Tracker keeps the last
		// delivered seq, so rule 1 holds across it.
		tr.Lost(it.match, bus.ReasonBus)
		return
	case itemStopped:
		tr.Forget(it.match)
		b.snaps.untrack(it.match)
		return
	}
	// One copy: the rueidis string becomes the sink's []byte.
	data := []byte(it.data)
	msg, err := bus.Parse(data)
	if err != nil || msg.Match != it.match {
		tr.Dropped(it.match, bus.DropInvalid)
		b.log.Debug("invalid bus message dropped", "match", it.match, "err", err, "bytes", len(data))
		return
	}
	tr.Message(msg)
}
