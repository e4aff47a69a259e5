package servertest

import (
	"context"
	"sync"

	"crease/bus"
)

// Bus is an embedded bus that outlives the gateways using it, as Redis does: a
// gateway's Shutdown closes its bus, which here only detaches that gateway, so that a
// new gateway can Start on the same bus while publishing goes on. It keeps the current
// gateway's sink, so that a test can say Lost as a real bus does after losing messages.
// The embedded bus's Publisher methods publish to whichever gateway is attached.
type Bus struct {
	*bus.Embedded
	mu      sync.Mutex
	sink    bus.Sink
	started bool
}

// NewBus returns a Bus with no gateway attached.
func NewBus() *Bus { return &Bus{Embedded: bus.NewEmbedded()} }

// relay is the embedded bus's only sink: it forwards to the current gateway.
type relay struct{ b *Bus }

func (r relay) Deliver(msg bus.Message) {
	if s := r.b.current(); s != nil {
		s.Deliver(msg)
	}
}

func (r relay) Lost(match string, reason bus.ResyncReason) { r.b.Lost(match, reason) }

func (r relay) Dropped(match string, reason bus.DropReason) {
	if s := r.b.current(); s != nil {
		s.Dropped(match, reason)
	}
}

func (b *Bus) current() bus.Sink {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sink
}

// Start implements bus.Subscriber: sink becomes the current gateway.
func (b *Bus) Start(ctx context.Context, sink bus.Sink) error {
	b.mu.Lock()
	b.sink = sink
	first := !b.started
	b.started = true
	b.mu.Unlock()
	if first {
		return b.Embedded.Start(ctx, relay{b})
	}
	return nil
}

// Close implements bus.Subscriber: the gateway is gone, the bus stays.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.sink = nil
	b.mu.Unlock()
	return nil
}

// Lost tells the current gateway that messages of match may have been lost.
func (b *Bus) Lost(match string, reason bus.ResyncReason) {
	if s := b.current(); s != nil {
		s.Lost(match, reason)
	}
}
