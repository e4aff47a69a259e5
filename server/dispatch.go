package server

import (
	"math/bits"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	"crease/shard"
)

// dispatcher is the gateway's bus.Sink: the bus's Tracker hands it each message once,
// parsed and in order; it counts it, encodes its frame once and posts it to the shards
// that have subscribers of its match. It also turns the shards' interest changes into
// bus Subscribe and Unsubscribe calls, made at once on the loop where the change
// happened (the bus only records them), under mu so that the calls of one match keep
// their order across loops.
type dispatcher struct {
	s   *Server
	bus bus.Subscriber
	m   *metrics

	deltas, events prometheus.Counter // crease_bus_messages_total{kind}

	mu sync.Mutex
	// masks has a bit per shard with subscribers of the match.
	masks map[string]uint64
}

var _ bus.Sink = (*dispatcher)(nil)

func newDispatcher(s *Server) *dispatcher {
	return &dispatcher{s: s, bus: s.opts.Bus, m: s.m, masks: make(map[string]uint64),
		deltas: s.m.busMessages.WithLabelValues("delta"), events: s.m.busMessages.WithLabelValues("event")}
}

// interest is the shards' Interest hook: it runs on the loop of shard idx.
func (d *dispatcher) interest(idx int, match string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.masks[match]
	m := old
	if on {
		m |= 1 << idx
	} else {
		m &^= 1 << idx
	}
	if m == 0 {
		delete(d.masks, match)
	} else {
		d.masks[match] = m
	}
	switch {
	case old == 0 && m != 0:
		d.s.recovery.interest(match, true)
		d.bus.Subscribe(match)
	case old != 0 && m == 0:
		d.s.recovery.interest(match, false)
		d.bus.Unsubscribe(match)
	}
}

func (d *dispatcher) mask(match string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.masks[match]
}

// Deliver implements bus.Sink. It runs on the bus's goroutine and never blocks.
func (d *dispatcher) Deliver(msg bus.Message) {
	if msg.Kind == bus.KindDelta {
		d.deltas.Inc()
	} else {
		d.events.Inc()
	}
	d.m.observeBusLatency(msg.TS, time.Now())
	mask := d.mask(msg.Match)
	if mask == 0 {
		return
	}
	f := shard.NewBusFrame(msg)
	if msg.Kind == bus.KindDelta && d.s.recovery.delivered(msg, f) {
		// Kept for replay before the loops see it, and posted to the loops interested
		// once it is kept: a loop that asked for a replay since then has it in the
		// answer or gets it after (recovery.go).
		mask = d.mask(msg.Match)
	}
	d.post(mask, func(sh *shard.Shard) { sh.Post(f) })
}

// Lost implements bus.Sink.
func (d *dispatcher) Lost(match string, reason bus.ResyncReason) {
	d.m.busLost.WithLabelValues(string(reason)).Inc()
	d.s.recovery.lost(match) // before the loops hear of it (recovery.go)
	d.post(d.mask(match), func(sh *shard.Shard) { sh.PostLost(match, reason) })
}

// Dropped implements bus.Sink.
func (d *dispatcher) Dropped(_ string, reason bus.DropReason) {
	if reason == bus.DropInvalid {
		d.m.busInvalid.Inc()
		return
	}
	d.m.busDropped.WithLabelValues(string(reason)).Inc()
}

func (d *dispatcher) post(mask uint64, fn func(*shard.Shard)) {
	for mask != 0 {
		i := bits.TrailingZeros64(mask)
		mask &^= 1 << i
		if sh := d.s.shards[i].Load(); sh != nil {
			fn(sh)
		}
	}
}
