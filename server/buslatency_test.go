package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
)

// TestBusLatencyMetric: crease_bus_latency_seconds observes, for every valid bus
// message, the time from its publisher's ts to its arrival in this gateway, whether or
// not anyone here follows the match; a ts ahead of this host's clock counts as 0.
func TestBusLatencyMetric(t *testing.T) {
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 1})
	base := servertest.HTTPURL(s)
	event := func(ts int64) []byte {
		return fmt.Appendf(nil, `{"type":"event","match":"m1","prio":"low","ts":%d,"kind":"text","text":"x"}`, ts)
	}
	ctx := context.Background()
	// Published 200 ms ago: however slow this machine, it lands above 0.15 s.
	if err := b.PublishEvent(ctx, "m1", event(time.Now().Add(-200*time.Millisecond).UnixMicro())); err != nil {
		t.Fatal(err)
	}
	// A publisher whose clock is an hour ahead.
	if err := b.PublishEvent(ctx, "m1", event(time.Now().Add(time.Hour).UnixMicro())); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 5*time.Second, func() error {
		if n := servertest.Metric(t, base, "crease_bus_latency_seconds_count"); n != 2 {
			return fmt.Errorf("observed %v messages, want 2", n)
		}
		return nil
	})
	for sample, want := range map[string]float64{
		"crease_bus_latency_seconds_count":               2,
		`crease_bus_latency_seconds_bucket{le="0.0001"}`: 1, // the clock ahead, clamped to 0
		`crease_bus_latency_seconds_bucket{le="0.15"}`:   1,
		`crease_bus_latency_seconds_bucket{le="+Inf"}`:   2,
	} {
		if got := servertest.Metric(t, base, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	if sum := servertest.Metric(t, base, "crease_bus_latency_seconds_sum"); sum < 0.2 {
		t.Errorf("latency sum %v s, want at least the 0.2 s of the old message", sum)
	}
}
