package redis

import (
	"slices"
	"testing"
	"time"

	"crease/bus"
	"crease/internal/redistest"
)

// gatedSink blocks its first Deliver until released, standing in for a deliverer that
// fell behind, so the hand-off queue overflows.
type gatedSink struct {
	*fakeSink
	gate    chan struct{}
	entered chan struct{}
}

func (s *gatedSink) Deliver(msg bus.Message) {
	select {
	case s.entered <- struct{}{}:
		<-s.gate
	default:
	}
	s.fakeSink.Deliver(msg)
}

func TestHandoffOverflowReportsLost(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	o := testOptions(srv.Addr())
	o.HandoffMessages = 4
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	sink := &gatedSink{fakeSink: &fakeSink{t: t}, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	if err := b.Start(t.Context(), sink); err != nil {
		t.Fatal(err)
	}
	b.Subscribe("m1")
	waitSubscribed(t, srv, "m1", false)
	ctx := t.Context()
	const n = 20
	if err := b.PublishDelta(ctx, delta("m1", 1, "")); err != nil {
		t.Fatal(err)
	}
	<-sink.entered // the deliverer is stuck in the first Deliver, holding seq 1 only
	for seq := uint64(2); seq <= n; seq++ {
		if err := b.PublishDelta(ctx, delta("m1", seq, "")); err != nil {
			t.Fatal(err)
		}
	}
	// 4 queued, the other 15 dropped: counted in order with the deliveries, once the
	// deliverer is free again.
	eventually(t, 5*time.Second, "every message queued or dropped", func() bool {
		b.q.mu.Lock()
		defer b.q.mu.Unlock()
		return len(b.q.items) == o.HandoffMessages && b.q.lost["m1"] == n-1-o.HandoffMessages
	})
	close(sink.gate)
	eventually(t, 5*time.Second, "overflow drops", func() bool {
		return sink.dropped(bus.DropOverflow) == n-1-o.HandoffMessages
	})
	dropped := float64(sink.dropped(bus.DropOverflow))
	// One at the subscribe confirmation, one for the overflow.
	eventually(t, 5*time.Second, "Lost(bus)", func() bool { return sink.losses("m1", bus.ReasonBus) == 2 })
	if err := b.PublishDelta(ctx, delta("m1", n+1, "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the delta after the loss", func() bool {
		d := sink.delivered()
		return len(d) > 0 && d[len(d)-1] == deltaFrame("m1", n+1)
	})
	// In order: Lost(bus) of the subscription, seq 1..k without a hole, then Lost(bus),
	// then n+1, no gap reported.
	calls := sink.snapshot()
	if calls[0] != (call{lost: true, match: "m1", reason: bus.ReasonBus}) {
		t.Fatalf("first call %+v", calls[0])
	}
	calls = calls[1:]
	k := 0
	for k < len(calls) && !calls[k].lost {
		if calls[k].data != deltaFrame("m1", uint64(k+1)) {
			t.Fatalf("call %d: %+v", k, calls[k])
		}
		k++
	}
	want := []call{{lost: true, match: "m1", reason: bus.ReasonBus}, {data: deltaFrame("m1", n+1)}}
	if !slices.Equal(calls[k:], want) {
		t.Fatalf("after %d deliveries: %+v", k, calls[k:])
	}
	if k != 1+o.HandoffMessages || float64(n-k) != dropped {
		t.Fatalf("delivered %d, dropped %v of %d", k, dropped, n)
	}
	t.Logf("queue of %d: delivered %d, dropped %v, one Lost(bus)", o.HandoffMessages, k, dropped)
}
