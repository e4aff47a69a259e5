package redis

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"crease/bus"
	"crease/internal/redistest"
	"crease/server/servertest"
)

// call is one Sink call, in order.
type call struct {
	lost   bool
	match  string
	reason bus.ResyncReason
	data   string
}

// fakeSink records every call under a mutex and fails the test if the bus ever calls it
// from two goroutines at once.
type fakeSink struct {
	t      testing.TB
	inside atomic.Int32
	mu     sync.Mutex
	calls  []call
	drops  map[bus.DropReason]int
}

func (s *fakeSink) enter() {
	if s.inside.Add(1) != 1 {
		s.t.Error("sink called concurrently")
	}
}

func (s *fakeSink) Deliver(msg bus.Message) {
	s.enter()
	defer s.inside.Add(-1)
	s.mu.Lock()
	s.calls = append(s.calls, call{data: string(msg.Data)})
	s.mu.Unlock()
}

func (s *fakeSink) Dropped(_ string, reason bus.DropReason) {
	s.enter()
	defer s.inside.Add(-1)
	s.mu.Lock()
	if s.drops == nil {
		s.drops = map[bus.DropReason]int{}
	}
	s.drops[reason]++
	s.mu.Unlock()
}

// dropped returns how many messages the bus reported dropped for reason.
func (s *fakeSink) dropped(reason bus.DropReason) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drops[reason]
}

func (s *fakeSink) Lost(match string, reason bus.ResyncReason) {
	s.enter()
	defer s.inside.Add(-1)
	s.mu.Lock()
	s.calls = append(s.calls, call{lost: true, match: match, reason: reason})
	s.mu.Unlock()
}

func (s *fakeSink) snapshot() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *fakeSink) delivered() []string {
	var out []string
	for _, c := range s.snapshot() {
		if !c.lost {
			out = append(out, c.data)
		}
	}
	return out
}

func (s *fakeSink) losses(match string, reason bus.ResyncReason) int {
	n := 0
	for _, c := range s.snapshot() {
		if c.lost && c.match == match && c.reason == reason {
			n++
		}
	}
	return n
}

// eventually waits for cond (servertest.Eventually), naming what it waits for.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	servertest.Eventually(t, timeout, servertest.Cond(what, cond))
}

func testOptions(addrs ...string) Options {
	return Options{
		Addrs:               addrs,
		Registerer:          prometheus.NewRegistry(),
		UnsubscribeDebounce: 200 * time.Millisecond,
		HealthInterval:      50 * time.Millisecond,
		Reassert:            -1, // on only where a test is about it (reassert_test.go)
	}
}

// nodeOptions is testOptions for the gateway node named node.
func nodeOptions(node string, addrs ...string) Options {
	o := testOptions(addrs...)
	o.NodeID = node
	return o
}

// newClosingBus makes a bus, not started, closed in t.Cleanup.
func newClosingBus(t testing.TB, o Options) *Bus {
	t.Helper()
	b, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newTestBus makes a started bus with a fake sink, closed in t.Cleanup.
func newTestBus(t testing.TB, o Options) (*Bus, *fakeSink) {
	t.Helper()
	b := newClosingBus(t, o)
	sink := &fakeSink{t: t}
	if err := b.Start(t.Context(), sink); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return b, sink
}

func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	return 0
}

// testEpoch is the epoch of the helpers' deltas.
const testEpoch = "e1"

func deltaFrame(match string, seq uint64) string {
	return epochFrame(match, testEpoch, seq, 1764322000123456)
}

func epochFrame(match, epoch string, seq uint64, ts int64) string {
	return fmt.Sprintf(`{"type":"delta","match":%q,"epoch":%q,"seq":%d,"prio":"high","ts":%d,"patch":{"score":{"runs":%d}}}`, match, epoch, seq, ts, seq)
}

func eventFrame(match, text string) string {
	return fmt.Sprintf(`{"type":"event","match":%q,"prio":"low","ts":1764322000123456,"kind":"commentary","text":%q}`, match, text)
}

func delta(match string, seq uint64, title string) bus.Delta {
	return bus.Delta{
		Match: match, Title: title, Epoch: testEpoch, Seq: seq,
		State: []byte(fmt.Sprintf(`{"score":{"runs":%d}}`, seq)),
		Frame: []byte(deltaFrame(match, seq)),
	}
}

// channels lists PUBSUB CHANNELS (or SHARDCHANNELS) of one server, sorted.
func channels(t testing.TB, s *redistest.Server, shard bool) []string {
	t.Helper()
	sub := "CHANNELS"
	if shard {
		sub = "SHARDCHANNELS"
	}
	chs := s.PubSub(t, sub)
	slices.Sort(chs)
	return chs
}

// logRecorder is a slog.Handler keeping the messages logged, for tests that wait for
// something the bus only logs.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.msgs, msg)
}

// newSubscribedBus starts a Redis and a bus on it subscribed to m1, once Redis shows the
// subscription.
func newSubscribedBus(t *testing.T) (*redistest.Server, *Bus, *fakeSink) {
	t.Helper()
	srv := redistest.Start(t)
	b, sink := newTestBus(t, testOptions(srv.Addr()))
	b.Subscribe("m1")
	waitSubscribed(t, srv, "m1", false)
	return srv, b, sink
}

func waitSubscribed(t *testing.T, srv *redistest.Server, match string, shard bool) {
	t.Helper()
	eventually(t, 5*time.Second, "subscription of "+match, func() bool {
		return slices.Contains(channels(t, srv, shard), "crease:{"+match+"}")
	})
}

// publishSeqs publishes the deltas mk makes for seqs from..to through p.
func publishSeqs(t testing.TB, p bus.Publisher, from, to uint64, mk func(seq uint64) bus.Delta) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		if err := p.PublishDelta(t.Context(), mk(seq)); err != nil {
			t.Fatal(err)
		}
	}
}

// m1Delta is m1's plain delta seq, for publishSeqs.
func m1Delta(seq uint64) bus.Delta { return delta("m1", seq, "") }
