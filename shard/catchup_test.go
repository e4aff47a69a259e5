package shard

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"crease/bus"
)

func patchFrame(t testing.TB, match string, seq uint64, prio, patch string) *Frame {
	t.Helper()
	return busFrame(t, fmt.Appendf(nil, `{"type":"delta","match":%q,"epoch":"E1","seq":%d,"prio":%q,"ts":%d,"patch":%s}`,
		match, seq, prio, 1000+seq, patch))
}

// catchUpMsg is a catch-up delta as the peer reads it.
type catchUpMsg struct {
	Type  string          `json:"type"`
	Match string          `json:"match"`
	Epoch string          `json:"epoch"`
	Seq   uint64          `json:"seq"`
	From  *uint64         `json:"from"`
	Prio  string          `json:"prio"`
	TS    int64           `json:"ts"`
	Patch json.RawMessage `json:"patch"`
}

func decodeFrame(t *testing.T, f *Frame) catchUpMsg {
	t.Helper()
	var m catchUpMsg
	if err := json.Unmarshal(framePayload(f.Bytes), &m); err != nil {
		t.Fatalf("frame %q: %v", framePayload(f.Bytes), err)
	}
	return m
}

func jsonEq(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		t.Fatalf("not JSON: %s / %s", a, b)
	}
	return reflect.DeepEqual(x, y)
}

func queuedOf(q *outQueue, match string) (deltas, resyncs []*Frame) {
	for _, f := range q.state {
		switch {
		case f.Match == match && isDelta(f):
			deltas = append(deltas, f)
		case f.Match == match && f.Kind == KindResync:
			resyncs = append(resyncs, f)
		}
	}
	return deltas, resyncs
}

// A connection with ?catchup=1 that falls behind gets each match's queued deltas as one
// delta with `from` when they compose exactly, and `resync` for a match whose run does
// not compose; one without the opt-in gets `resync` for both, as before.
func TestCatchUpComposesQueuedDeltas(t *testing.T) {
	s := newTestShard(t, Options{Budget: 1 << 20, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	cu, _ := blockedConn(t, s, "a", "b")
	s.SetCatchUp(cu)
	plain, _ := blockedConn(t, s, "a", "b")
	a := []string{`{"score":{"runs":1,"wickets":0},"over":"0.1"}`, `{"score":{"runs":5},"over":"0.2"}`, `{"striker":null,"score":{"wickets":1}}`, `{"striker":"B","over":"0.3"}`}
	b := []string{`{"x":5}`, `{"x":{"y":1}}`} // an object over a number: not expressible
	for _, c := range []*Conn{cu, plain} {
		for i, p := range a {
			prio := "normal"
			if i == 2 {
				prio = "high"
			}
			s.enqueue(c, patchFrame(t, "a", uint64(11+i), prio, p))
		}
		for i, p := range b {
			s.enqueue(c, patchFrame(t, "b", uint64(21+i), "normal", p))
		}
		s.shedDeltas(c, c.out, bus.ReasonSlow)
	}
	checkAccounting(t, s, cu, plain)
	d, r := queuedOf(cu.out, "a")
	if len(d) != 1 || len(r) != 0 || d[0].Kind != KindCatchUp {
		t.Fatalf("match a: %d deltas, %d resyncs; want one catch-up delta", len(d), len(r))
	}
	m := decodeFrame(t, d[0])
	if m.Type != "delta" || m.Match != "a" || m.Epoch != "E1" || m.Seq != 14 || m.From == nil || *m.From != 10 || m.Prio != "high" || m.TS != 1014 {
		t.Fatalf("catch-up delta %+v", m)
	}
	if want := `{"score":{"runs":5,"wickets":1},"over":"0.3","striker":"B"}`; !jsonEq(t, string(m.Patch), want) {
		t.Fatalf("patch %s, want %s", m.Patch, want)
	}
	if d, r := queuedOf(cu.out, "b"); len(d) != 0 || len(r) != 1 {
		t.Fatalf("match b (inexact): %d deltas, %d resyncs; want one resync", len(d), len(r))
	}
	for _, match := range []string{"a", "b"} {
		if d, r := queuedOf(plain.out, match); len(d) != 0 || len(r) != 1 {
			t.Fatalf("without catchup, match %s: %d deltas, %d resyncs; want one resync", match, len(d), len(r))
		}
	}
	if n := counterValue(t, s.m.CatchUps.WithLabelValues("queue", CatchUpComposed)); n != 1 {
		t.Fatalf("composed %v, want 1", n)
	}
	if n := counterValue(t, s.m.CatchUps.WithLabelValues("queue", CatchUpInexact)); n != 1 {
		t.Fatalf("inexact %v, want 1", n)
	}
}

// One composition per connection per tick: sheds within the tick leave the lanes be
// (up to twice the Budget, past which it composes again); the next tick composes the catch-up delta with the deltas
// queued since, its `from` unchanged. A single delta is kept rather than resynced.
func TestCatchUpOncePerTick(t *testing.T) {
	s := newTestShard(t, Options{Budget: 64 << 10, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	c, _ := blockedConn(t, s, "a")
	s.SetCatchUp(c)
	s.enqueue(c, patchFrame(t, "a", 5, "normal", `{"n":5}`))
	s.shedDeltas(c, c.out, bus.ReasonSlow)
	if d, r := queuedOf(c.out, "a"); len(d) != 1 || len(r) != 0 || d[0].Seq != 5 {
		t.Fatalf("a single delta: %d deltas, %d resyncs", len(d), len(r))
	}
	s.enqueue(c, patchFrame(t, "a", 6, "normal", `{"n":6}`))
	s.shedDeltas(c, c.out, bus.ReasonSlow) // same tick: left as is
	if d, _ := queuedOf(c.out, "a"); len(d) != 2 {
		t.Fatalf("%d deltas after a second shed in one tick, want 2 (left)", len(d))
	}
	s.Tick(ControlRaw([]byte{0x89, 0}))
	s.enqueue(c, patchFrame(t, "a", 7, "normal", `{"m":7}`))
	s.shedDeltas(c, c.out, bus.ReasonSlow)
	d, r := queuedOf(c.out, "a")
	if len(d) != 1 || len(r) != 0 {
		t.Fatalf("next tick: %d deltas, %d resyncs; want one catch-up", len(d), len(r))
	}
	m := decodeFrame(t, d[0])
	if m.Seq != 7 || m.From == nil || *m.From != 4 || !jsonEq(t, string(m.Patch), `{"n":6,"m":7}`) {
		t.Fatalf("catch-up %+v %s", m, m.Patch)
	}
	// It composes again with later deltas: `from` stays the first base.
	s.Tick(ControlRaw([]byte{0x89, 0}))
	s.enqueue(c, patchFrame(t, "a", 8, "normal", `{"n":8}`))
	s.shedDeltas(c, c.out, bus.ReasonSlow)
	d, _ = queuedOf(c.out, "a")
	if m := decodeFrame(t, d[0]); len(d) != 1 || m.Seq != 8 || *m.From != 4 || !jsonEq(t, string(m.Patch), `{"n":8,"m":7}`) {
		t.Fatalf("recomposed %+v %s", m, m.Patch)
	}
	checkAccounting(t, s, c)
}

// The shard's composition work per tick and the size of a composed patch are bounded:
// past them, resync.
func TestCatchUpBounds(t *testing.T) {
	s := newTestShard(t, Options{Budget: 64 << 10, StallLimit: time.Hour, CutLimit: 2 * time.Hour, CatchUpWork: 60, CatchUpBytes: 30})
	c1, _ := blockedConn(t, s, "a")
	c2, _ := blockedConn(t, s, "a")
	s.SetCatchUp(c1)
	s.SetCatchUp(c2)
	for _, c := range []*Conn{c1, c2} {
		s.enqueue(c, patchFrame(t, "a", 1, "normal", `{"n":1,"text":"twenty-two bytes here"}`))
		s.enqueue(c, patchFrame(t, "a", 2, "normal", `{"n":2}`))
		s.shedDeltas(c, c.out, bus.ReasonSlow)
	}
	if _, r := queuedOf(c1.out, "a"); len(r) != 1 {
		t.Fatalf("a composition over CatchUpBytes: %d resyncs, want 1", len(r))
	}
	if _, r := queuedOf(c2.out, "a"); len(r) != 1 {
		t.Fatalf("past CatchUpWork: %d resyncs, want 1", len(r))
	}
	if n := counterValue(t, s.m.CatchUps.WithLabelValues("queue", CatchUpTooLarge)); n != 1 {
		t.Fatalf("too_large %v", n)
	}
	if n := counterValue(t, s.m.CatchUps.WithLabelValues("queue", CatchUpOverBudget)); n != 1 {
		t.Fatalf("over_budget %v", n)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Within one tick, lanes past twice the Budget are composed again rather than resynced.
func TestCatchUpAgainPastTwiceTheBudget(t *testing.T) {
	s := newTestShard(t, Options{Budget: 4 << 10, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	c, _ := blockedConn(t, s, "a")
	s.SetCatchUp(c)
	s.enqueue(c, patchFrame(t, "a", 1, "normal", `{"n":1}`))
	s.enqueue(c, patchFrame(t, "a", 2, "normal", `{"n":2}`))
	s.shedDeltas(c, c.out, bus.ReasonSlow)
	for seq := uint64(3); c.out.bytes <= 2*(4<<10); seq++ {
		s.enqueue(c, patchFrame(t, "a", seq, "normal", fmt.Sprintf(`{"n":%d,"pad":%q}`, seq, pad[:100])))
	}
	s.shedDeltas(c, c.out, bus.ReasonSlow)
	d, r := queuedOf(c.out, "a")
	if len(d) != 1 || len(r) != 0 {
		t.Fatalf("%d deltas, %d resyncs; want one catch-up delta", len(d), len(r))
	}
	if m := decodeFrame(t, d[0]); *m.From != 0 {
		t.Fatalf("from %d, want 0", *m.From)
	}
	checkAccounting(t, s, c)
}
