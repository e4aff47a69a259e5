package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// dialSub connects to gw and sends subscribe with since (epoch, seq).
func dialSince(t *testing.T, gw *server.Server, match, epoch string, seq uint64) *servertest.WSConn {
	t.Helper()
	c, _, err := servertest.DialWS(gw.WSAddr().String(), "/ws", nil, "")
	if err != nil || c == nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.Expect(t, "hello")
	op := fmt.Sprintf(`{"op":"subscribe","match":%q,"since":{"epoch":%q,"seq":%d}}`, match, epoch, seq)
	if err := c.Send(op); err != nil {
		t.Fatal(err)
	}
	return c
}

// subscribedRecovered reads the answer to a subscribe with since.
func subscribedRecovered(t *testing.T, c *servertest.WSConn) bool {
	t.Helper()
	f := c.Expect(t, "subscribed")
	var s struct {
		Recovered *bool `json:"recovered"`
	}
	if err := json.Unmarshal(f.Raw, &s); err != nil || s.Recovered == nil {
		t.Fatalf("subscribed without recovered: %s", f.Raw)
	}
	return *s.Recovered
}

// expectDeltas reads deltas from..to of the connection, in order, and nothing else.
func expectDeltas(t *testing.T, c *servertest.WSConn, from, to uint64) {
	t.Helper()
	for want := from; want <= to; want++ {
		f := c.Expect(t, "delta")
		if f.Seq != want {
			t.Fatalf("delta %d, want %d (%s)", f.Seq, want, f.Raw)
		}
	}
}

// A subscribe with since the position held gets `recovered:true`, the missed deltas in
// order, then the live ones, without a gap or a duplicate at the boundary.
func TestSinceReplaysTheMissedDeltas(t *testing.T) {
	b := bus.NewEmbedded()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	p := servertest.NewPublisher(b, "m1")
	for i := 1; i <= 10; i++ {
		p.Set(t, "n", i)
	}
	c := dialSince(t, gw, "m1", p.Epoch, 4)
	if !subscribedRecovered(t, c) {
		t.Fatal("recovered:false for a position inside the history")
	}
	expectDeltas(t, c, 5, 10)
	p.Set(t, "n", 11)
	expectDeltas(t, c, 11, 11)

	// At the current position: recovered, nothing to replay.
	c2 := dialSince(t, gw, "m1", p.Epoch, 11)
	if !subscribedRecovered(t, c2) {
		t.Fatal("recovered:false at the current position")
	}
	p.Set(t, "n", 12)
	expectDeltas(t, c2, 12, 12)
	expectDeltas(t, c, 12, 12)
}

// Positions that cannot be recovered are answered `recovered:false`, and the
// subscription is live from there.
func TestSinceNotRecoverable(t *testing.T) {
	b := bus.NewEmbeddedWith(bus.HistoryOptions{MaxDeltas: 5})
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 1})
	p := servertest.NewPublisher(b, "m1")
	for i := 1; i <= 10; i++ {
		p.Set(t, "n", i)
	}
	for _, tc := range []struct {
		name  string
		epoch string
		seq   uint64
	}{
		{"older than the history", p.Epoch, 3},
		{"another epoch", "OtherEpoch", 8},
		{"ahead of the store", p.Epoch, 20},
	} {
		c := dialSince(t, gw, "m1", tc.epoch, tc.seq)
		if subscribedRecovered(t, c) {
			t.Fatalf("%s: recovered:true", tc.name)
		}
		p.Set(t, "n", int(p.Seq)+1)
		expectDeltas(t, c, p.Seq, p.Seq)
	}
	// A match that never started.
	c := dialSince(t, gw, "nope", p.Epoch, 3)
	if subscribedRecovered(t, c) {
		t.Fatal("recovered:true for an unknown match")
	}
}

// A malformed since is refused with bad_request and changes nothing.
func TestSinceMalformed(t *testing.T) {
	gw := servertest.Run(t, server.Options{Loops: 1})
	c, _, err := servertest.DialWS(gw.WSAddr().String(), "/ws", nil, "")
	if err != nil || c == nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Expect(t, "hello")
	for _, bad := range []string{`"x"`, `{"epoch":"e"}`, `{"epoch":"","seq":1}`, `{"epoch":"e","seq":-1}`, `{"epoch":"e","seq":1.5}`, `{"epoch":5,"seq":1}`, `{"epoch":"e","seq":"1"}`} {
		if err := c.Send(`{"op":"subscribe","match":"m1","since":` + bad + `}`); err != nil {
			t.Fatal(err)
		}
		f := c.Expect(t, "error")
		if !strings.Contains(string(f.Raw), `"bad_request"`) || !strings.Contains(string(f.Raw), "since") {
			t.Fatalf("since %s: %s", bad, f.Raw)
		}
	}
	if err := c.Send(`{"op":"subscribe","match":"m1","since":null}`); err != nil {
		t.Fatal(err)
	}
	if f := c.Expect(t, "subscribed"); strings.Contains(string(f.Raw), "recovered") {
		t.Fatalf("since null is a plain subscribe: %s", f.Raw)
	}
}

// gatedBus is an embedded bus whose history reads are counted and held until the test
// opens the gate.
type gatedBus struct {
	*servertest.Bus
	reads atomic.Int64
	gate  chan struct{}
}

func newGatedBus() *gatedBus { return &gatedBus{Bus: servertest.NewBus(), gate: make(chan struct{})} }

func (g *gatedBus) History(ctx context.Context, match, epoch string, after uint64) ([]bus.Message, bool, error) {
	g.reads.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	return g.Bus.History(ctx, match, epoch, after)
}

// subscriptions is the gateway's crease_subscriptions over its loops.
func subscriptions(t *testing.T, gw *server.Server, loops int) int {
	n := 0.0
	for i := range loops {
		n += servertest.Metric(t, servertest.HTTPURL(gw), fmt.Sprintf(`crease_subscriptions{loop="%d"}`, i))
	}
	return int(n)
}

// A reconnect storm: many clients of two matches subscribe with since at once, from
// various positions, while the first read of each match is out. It costs one history
// read per match, shared by every waiting client of every loop; later clients are
// answered from what the gateway keeps, with no read at all.
func TestReconnectStormSharesOneReadPerMatch(t *testing.T) {
	b := newGatedBus()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	pubs := []*servertest.Publisher{servertest.NewPublisher(b, "m1"), servertest.NewPublisher(b, "m2")}
	for _, p := range pubs {
		for i := 1; i <= 20; i++ {
			p.Set(t, "n", i)
		}
	}
	type waiter struct {
		c     *servertest.WSConn
		since uint64
	}
	var ws []waiter
	for i := range 120 {
		p := pubs[i%2]
		since := uint64(5 + i%14)
		ws = append(ws, waiter{dialSince(t, gw, p.Match, p.Epoch, since), since})
	}
	servertest.Eventually(t, 10*time.Second, func() error {
		if n := subscriptions(t, gw, 2); n != len(ws) {
			return fmt.Errorf("%d of %d subscribes taken", n, len(ws))
		}
		return nil
	})
	close(b.gate)
	for _, w := range ws {
		if !subscribedRecovered(t, w.c) {
			t.Fatal("recovered:false")
		}
		expectDeltas(t, w.c, w.since+1, 20)
	}
	if n := b.reads.Load(); n != 2 {
		t.Fatalf("%d history reads for 120 clients of 2 matches, want 2", n)
	}
	// Later arrivals are answered from what is kept (the first read's deltas, and
	// every live one since), with no read.
	for _, p := range pubs {
		p.Set(t, "n", 21)
		c := dialSince(t, gw, p.Match, p.Epoch, 10)
		if !subscribedRecovered(t, c) {
			t.Fatal("recovered:false")
		}
		expectDeltas(t, c, 11, 21)
	}
	for _, w := range ws {
		expectDeltas(t, w.c, 21, 21)
	}
	if n := b.reads.Load(); n != 2 {
		t.Fatalf("%d history reads after the storm, want still 2", n)
	}
	// A position older than what is kept costs one more read.
	c := dialSince(t, gw, "m1", pubs[0].Epoch, 2)
	if !subscribedRecovered(t, c) {
		t.Fatal("recovered:false")
	}
	expectDeltas(t, c, 3, 21)
	if n := b.reads.Load(); n != 3 {
		t.Fatalf("%d history reads, want 3", n)
	}
	if n := servertest.Metric(t, servertest.HTTPURL(gw), `crease_recoveries_total{result="recovered"}`); n != 123 {
		t.Fatalf("crease_recoveries_total{result=recovered} %v, want 123", n)
	}
}

// History reads over --replay-rate are refused: their subscribes get recovered:false.
func TestReplayRateBound(t *testing.T) {
	b := newGatedBus()
	close(b.gate)
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 1, Recovery: server.RecoveryOptions{ReplayRate: 0.01, ReplayBurst: 1}})
	var pubs []*servertest.Publisher
	for _, m := range []string{"a", "b", "c"} {
		p := servertest.NewPublisher(b, m)
		p.Set(t, "n", 1)
		p.Set(t, "n", 2)
		pubs = append(pubs, p)
	}
	recovered := 0
	for _, p := range pubs {
		if subscribedRecovered(t, dialSince(t, gw, p.Match, p.Epoch, 1)) {
			recovered++
		}
	}
	if recovered != 1 || b.reads.Load() != 1 {
		t.Fatalf("%d recovered with %d reads; want 1 and 1 (a burst of one read)", recovered, b.reads.Load())
	}
	if n := servertest.Metric(t, servertest.HTTPURL(gw), `crease_recoveries_total{result="rate_limited"}`); n != 2 {
		t.Fatalf("rate_limited %v, want 2", n)
	}
}

// waitingReplay runs a gateway on a gated bus, publishes m1 up to seq 5 and dials a
// client that subscribes to it since seq 2: its replay waits until b.gate is closed.
func waitingReplay(t *testing.T) (*gatedBus, *server.Server, *servertest.Publisher, *servertest.WSConn) {
	t.Helper()
	b := newGatedBus()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 1})
	p := servertest.NewPublisher(b, "m1")
	for i := 1; i <= 5; i++ {
		p.Set(t, "n", i)
	}
	return b, gw, p, dialSince(t, gw, "m1", p.Epoch, 2)
}

// A loss of the match while a subscribe waits for its read asks again: the read that
// began before the loss is discarded, and the answer covers the loss.
func TestLossWhileWaitingAsksAgain(t *testing.T) {
	b, gw, _, c := waitingReplay(t)
	servertest.Eventually(t, 5*time.Second, func() error {
		if b.reads.Load() != 1 {
			return errors.New("no read yet")
		}
		return nil
	})
	b.Lost("m1", bus.ReasonBus)
	servertest.Eventually(t, 5*time.Second, func() error {
		if n := b.reads.Load(); n != 2 {
			return fmt.Errorf("%d reads, want a second after the loss", n)
		}
		return nil
	})
	close(b.gate)
	if !subscribedRecovered(t, c) {
		t.Fatal("recovered:false")
	}
	expectDeltas(t, c, 3, 5)
	servertest.Eventually(t, 5*time.Second, func() error {
		if n := servertest.Metric(t, servertest.HTTPURL(gw), `crease_history_reads_total{result="discarded"}`); n != 1 {
			return fmt.Errorf("%v reads discarded, want 1", n)
		}
		return nil
	})
}

// recoveredField is the `recovered` of a `subscribed` frame: "true", "false", or ""
// when it has none.
func recoveredField(t *testing.T, f servertest.Frame) string {
	t.Helper()
	var s struct {
		Recovered *bool `json:"recovered"`
	}
	if err := json.Unmarshal(f.Raw, &s); err != nil {
		t.Fatal(err)
	}
	if s.Recovered == nil {
		return ""
	}
	return fmt.Sprint(*s.Recovered)
}

// A subscribe waiting for its replay: every repeat is answered `subscribed` too (counts
// once), but only once the first answer is out and right after it, before the replayed
// deltas: a repeat with the same since gets the first answer's recovered, one with
// another since recovered:false, a plain one none. One unsubscribed meanwhile gets no
// answer at all.
func TestWaitingSubscribeRepeatedOrLeft(t *testing.T) {
	b, gw, p, c := waitingReplay(t)
	for _, op := range []string{
		fmt.Sprintf(`{"op":"subscribe","match":"m1","since":{"epoch":%q,"seq":2}}`, p.Epoch),
		`{"op":"subscribe","match":"m1"}`,
		fmt.Sprintf(`{"op":"subscribe","match":"m1","since":{"epoch":%q,"seq":3}}`, p.Epoch),
		`{"op":"dance"}`,
	} {
		if err := c.Send(op); err != nil {
			t.Fatal(err)
		}
	}
	// The loop takes ops in order: the error for the last one comes first, so none of
	// the repeats was answered before the replay is known.
	if f := c.Expect(t, "error"); !strings.Contains(string(f.Raw), "unknown_op") {
		t.Fatalf("got %s, want the unknown_op error before any subscribed", f.Raw)
	}
	left := dialSince(t, gw, "m1", p.Epoch, 2)
	for _, op := range []string{`{"op":"unsubscribe","match":"m1"}`, `{"op":"subscribe","match":"m1"}`} {
		if err := left.Send(op); err != nil {
			t.Fatal(err)
		}
	}
	if f := left.Expect(t, "subscribed"); strings.Contains(string(f.Raw), "recovered") {
		t.Fatalf("the plain subscribe after leaving: %s", f.Raw)
	}
	close(b.gate)
	for i, want := range []string{"true", "true", "", "false"} {
		if got := recoveredField(t, c.Expect(t, "subscribed")); got != want {
			t.Fatalf("answer %d: recovered %q, want %q", i+1, got, want)
		}
	}
	expectDeltas(t, c, 3, 5)
	p.Set(t, "n", 6)
	expectDeltas(t, c, 6, 6)    // and no further `subscribed` before it
	expectDeltas(t, left, 6, 6) // the abandoned replay never came
	if n := subscriptions(t, gw, 1); n != 2 {
		t.Fatalf("%d subscriptions, want 2: repeats count once", n)
	}
}

// A subscribe with since to a match the connection follows live already is answered
// `subscribed` with recovered:false (nothing is replayed for it: the client takes the
// snapshot route), and the subscription goes on unchanged.
func TestSubscribeSinceWhenLive(t *testing.T) {
	b := bus.NewEmbedded()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 1})
	p := servertest.NewPublisher(b, "m1")
	for i := 1; i <= 3; i++ {
		p.Set(t, "n", i)
	}
	for _, withSince := range []bool{false, true} {
		first := `{"op":"subscribe","match":"m1"}`
		if withSince { // at the current position: recovered, nothing to replay
			first = fmt.Sprintf(`{"op":"subscribe","match":"m1","since":{"epoch":%q,"seq":%d}}`, p.Epoch, p.Seq)
		}
		c, _, err := servertest.DialWS(gw.WSAddr().String(), "/ws", nil, "")
		if err != nil || c == nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Expect(t, "hello")
		if err := c.Send(first); err != nil {
			t.Fatal(err)
		}
		c.Expect(t, "subscribed")
		for _, since := range []uint64{1, p.Seq} {
			if err := c.Send(fmt.Sprintf(`{"op":"subscribe","match":"m1","since":{"epoch":%q,"seq":%d}}`, p.Epoch, since)); err != nil {
				t.Fatal(err)
			}
			if got := recoveredField(t, c.Expect(t, "subscribed")); got != "false" {
				t.Fatalf("after %s, since seq %d: recovered %q, want false", first, since, got)
			}
		}
		p.Set(t, "n", int(p.Seq)+1)
		expectDeltas(t, c, p.Seq, p.Seq)
	}
}

// A read that never answers: the subscribe gives up at RecoveryWait of the shard clock
// with recovered:false, and is live from there.
func TestWaitingSubscribeTimesOut(t *testing.T) {
	b := newGatedBus()
	clk := servertest.NewClock()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 1, Shard: shard.Options{Now: clk.Now},
		Recovery: server.RecoveryOptions{ReadTimeout: time.Hour}})
	t.Cleanup(func() { close(b.gate) })
	p := servertest.NewPublisher(b, "m1")
	p.Set(t, "n", 1)
	p.Set(t, "n", 2)
	c := dialSince(t, gw, "m1", p.Epoch, 1)
	servertest.Eventually(t, 5*time.Second, func() error {
		if b.reads.Load() != 1 {
			return errors.New("no read yet")
		}
		return nil
	})
	clk.Advance(shard.DefaultRecoveryWait)
	if subscribedRecovered(t, c) {
		t.Fatal("recovered:true without an answer")
	}
	p.Set(t, "n", 3)
	expectDeltas(t, c, 3, 3)
	if n := servertest.Metric(t, servertest.HTTPURL(gw), `crease_recoveries_total{result="timeout"}`); n != 1 {
		t.Fatalf("timeout %v, want 1", n)
	}
}

// With ?catchup=1 a replay comes as one delta with `from` = the position held, which
// applied to that state gives the current one; live deltas follow as they are.
func TestSinceWithCatchUpReplaysOneDelta(t *testing.T) {
	b := bus.NewEmbedded()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 1})
	p := servertest.NewPublisher(b, "m1")
	for i := 1; i <= 10; i++ {
		p.Set(t, fmt.Sprintf("k%d", i%3), i)
	}
	c, _, err := servertest.DialWS(gw.WSAddr().String(), "/ws?catchup=1", nil, "")
	if err != nil || c == nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Expect(t, "hello")
	if err := c.Send(fmt.Sprintf(`{"op":"subscribe","match":"m1","since":{"epoch":%q,"seq":4}}`, p.Epoch)); err != nil {
		t.Fatal(err)
	}
	if !subscribedRecovered(t, c) {
		t.Fatal("recovered:false")
	}
	f := c.Expect(t, "delta")
	var d struct {
		Seq   uint64          `json:"seq"`
		From  *uint64         `json:"from"`
		Epoch string          `json:"epoch"`
		Patch json.RawMessage `json:"patch"`
	}
	if err := json.Unmarshal(f.Raw, &d); err != nil || d.Seq != 10 || d.From == nil || *d.From != 4 || d.Epoch != p.Epoch {
		t.Fatalf("replay %s, want one delta 10 from 4", f.Raw)
	}
	// The state at 4 was {k1:4, k2:2, k0:3}; the patch takes it to the state at 10.
	var got, want map[string]int
	_ = json.Unmarshal(d.Patch, &got)
	_ = json.Unmarshal(p.State(), &want)
	state := map[string]int{"k1": 4, "k2": 2, "k0": 3}
	for k, v := range got {
		state[k] = v
	}
	if fmt.Sprint(state) != fmt.Sprint(want) {
		t.Fatalf("state at 4 patched with %s is %v, want %v", d.Patch, state, want)
	}
	p.Set(t, "k0", 11)
	expectDeltas(t, c, 11, 11)
	if n := servertest.Metric(t, servertest.HTTPURL(gw), `crease_catchups_total{result="composed",source="replay"}`); n != 1 {
		t.Fatalf("crease_catchups_total replay composed %v, want 1", n)
	}
}

// A bad ?catchup value is refused before the upgrade.
func TestCatchUpQueryRefused(t *testing.T) {
	gw := servertest.Run(t, server.Options{Loops: 1})
	c, resp, err := servertest.DialWS(gw.WSAddr().String(), "/ws?catchup=yes", nil, "")
	if err != nil || c != nil || resp.StatusCode != 400 {
		t.Fatalf("?catchup=yes: %v %v", resp, err)
	}
}
