package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"crease/bus"
)

// The real in-process bus: concurrent replays store the final snapshots, and a second
// publisher starting over at seq 1 is refused with ErrSeqConflict.
func TestReplayOntoEmbeddedBus(t *testing.T) {
	b := bus.NewEmbedded()
	ctx := context.Background()
	ms := embedded(t)
	errs := replayAll(ms, b)
	for i, m := range ms {
		if errs[i] != nil {
			t.Fatalf("%s: %v", m.ID(), errs[i])
		}
		snap, err := b.Snapshot(ctx, m.ID())
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			Match string          `json:"match"`
			Seq   uint64          `json:"seq"`
			State json.RawMessage `json:"state"`
		}
		if err := json.Unmarshal(snap.Raw, &s); err != nil {
			t.Fatal(err)
		}
		if s.Match != m.ID() || s.Seq != uint64(m.Steps()) || !sameJSON(t, s.State, mustJSON(t, m.Final())) {
			t.Errorf("%s: snapshot %s seq %d", m.ID(), s.Match, s.Seq)
		}
	}
	err := Replay(ctx, b, ms[0], ReplayOptions{})
	if !errors.Is(err, bus.ErrSeqConflict) {
		t.Fatalf("second publisher: %v", err)
	}
}
