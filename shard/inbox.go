package shard

import (
	"sync"
	"sync/atomic"

	"crease/bus"
)

// inboxItem is one hand-off from the bus goroutine to a loop: a frame, a notice that
// frames of a match were lost, or a history answer (history.go).
type inboxItem struct {
	next   *inboxItem
	frame  *Frame
	lost   string
	reason bus.ResyncReason
	hist   *HistoryAnswer
	at     int64 // monotonic nanoseconds when posted, for the dispatch delay
}

// inbox is a lock-free multi-producer, single-consumer queue bounded in bytes. Producers
// push onto an atomic stack; the loop takes the whole stack at once and reverses it, so
// a drain costs one atomic swap however much has queued. Deltas refused for lack of room
// are remembered by match so that the loop sends `resync` (reason bus) before any later
// frame of that match; refused events are only counted.
type inbox struct {
	head     atomic.Pointer[inboxItem]
	bytes    atomic.Int64
	limit    int64
	mu       sync.Mutex
	overflow map[string]struct{}
}

// push queues it unless a frame would exceed the byte limit; it reports whether it did.
func (q *inbox) push(it *inboxItem) bool {
	if it.frame != nil {
		n := int64(len(it.frame.Bytes))
		if q.bytes.Add(n) > q.limit {
			q.bytes.Add(-n)
			if it.frame.Kind != KindDelta {
				// An event may vanish without notice (rule 3); only a lost delta
				// needs a resync.
				return false
			}
			q.mu.Lock()
			if q.overflow == nil {
				q.overflow = make(map[string]struct{})
			}
			q.overflow[it.frame.Match] = struct{}{}
			q.mu.Unlock()
			return false
		}
	}
	for {
		old := q.head.Load()
		it.next = old
		if q.head.CompareAndSwap(old, it) {
			return true
		}
	}
}

// take returns everything queued, oldest first, and the matches that overflowed before
// the last of it was queued.
func (q *inbox) take() (*inboxItem, map[string]struct{}) {
	var list *inboxItem
	for it := q.head.Swap(nil); it != nil; {
		next := it.next
		it.next = list
		list = it
		it = next
	}
	var lost map[string]struct{}
	q.mu.Lock()
	if len(q.overflow) > 0 {
		lost = q.overflow
		q.overflow = nil
	}
	q.mu.Unlock()
	return list, lost
}
