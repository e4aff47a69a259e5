package servertest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"crease/bus"
)

// Publisher publishes one match's stream on any bus for tests: the state is a flat
// object of numbers, each delta sets one of them. A new Publisher has no memory of the
// match: it starts a new epoch (bus.NewEpoch) at seq 1, as a publisher does that lost
// its state and finds the store empty.
type Publisher struct {
	Bus   bus.Publisher
	Match string
	Epoch string
	Seq   uint64
	state map[string]int
}

// NewPublisher returns a Publisher of match on b, at a new epoch.
func NewPublisher(b bus.Publisher, match string) *Publisher {
	return &Publisher{Bus: b, Match: match, Epoch: bus.NewEpoch(), state: map[string]int{}}
}

// Set publishes the delta {key: value} at the next seq.
func (p *Publisher) Set(t testing.TB, key string, value int) {
	t.Helper()
	p.state[key] = value
	state, _ := json.Marshal(p.state)
	patch, _ := json.Marshal(map[string]int{key: value})
	frame := fmt.Appendf(nil, `{"type":"delta","match":%q,"epoch":%q,"seq":%d,"prio":"normal","ts":%d,"patch":%s}`,
		p.Match, p.Epoch, p.Seq+1, time.Now().UnixMicro(), patch)
	d := bus.Delta{Match: p.Match, Title: "test " + p.Match, Epoch: p.Epoch, Seq: p.Seq + 1, State: state, Frame: frame}
	if err := p.Bus.PublishDelta(context.Background(), d); err != nil {
		t.Fatalf("servertest: publishing %s %s:%d: %v", p.Match, p.Epoch, d.Seq, err)
	}
	p.Seq++
}

// State returns the state after the last delta published, as JSON.
func (p *Publisher) State() json.RawMessage {
	b, _ := json.Marshal(maps.Clone(p.state))
	return b
}
