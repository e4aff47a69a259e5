package shard

import (
	"testing"
	"time"

	"crease/bus"
	"crease/codec"
	"crease/wire"
)

// postAll hands frames to the inbox as the dispatcher would and runs one drain.
func postAll(s *Shard, frames ...*Frame) {
	for _, f := range frames {
		s.Post(f)
	}
	s.drainInbox()
}

func TestInboxKeepsOrderAndWritesBatchInOneWrite(t *testing.T) {
	s := newTestShard(t, Options{})
	c, fc := openConn(s, -1, "m")
	var frames []*Frame
	for i := uint64(1); i <= 50; i++ {
		frames = append(frames, deltaFrame(t, "m", i, "normal"))
	}
	postAll(s, frames...)
	if fc.writes != 1 {
		t.Fatalf("%d writes for one drain, want 1", fc.writes)
	}
	got := fc.frames(t, false)
	if len(got) != 50 {
		t.Fatalf("%d frames, want 50", len(got))
	}
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Fatalf("frame %d has seq %d", i, m.Seq)
		}
	}
	if c.out != nil {
		t.Fatal("queue kept after everything was written")
	}
	checkAccounting(t, s, c)
}

func TestInboxOverflowResyncsBeforeLaterFrames(t *testing.T) {
	s := newTestShard(t, Options{InboxBytes: 64 << 10})
	c, fc := openConn(s, -1, "m", "other")
	f1 := deltaFrame(t, "m", 1, "high")
	per := len(f1.Bytes)
	fit := (64 << 10) / per
	// Fill the inbox exactly, then one more delta of m is refused.
	s.Post(f1)
	for i := 2; i <= fit; i++ {
		s.Post(deltaFrame(t, "m", uint64(i), "high"))
	}
	refused := deltaFrame(t, "m", uint64(fit+1), "high")
	s.Post(refused)
	if got := s.inbox.bytes.Load(); got > 64<<10 {
		t.Fatalf("inbox holds %d bytes over its limit", got)
	}
	// A refused event of another match is commentary: it may vanish without notice
	// (rule 3) and must not cost every subscriber a resync.
	s.Post(eventFrame(t, "other", 1))
	s.drainInbox()
	// Later frames arrive after the drain.
	postAll(s, deltaFrame(t, "m", uint64(fit+2), "high"))
	got := fc.frames(t, false)
	if len(got) == 0 || got[0].Type != "resync" || got[0].Match != "m" || got[0].Reason != "bus" {
		t.Fatalf("first frame %+v, want resync of m (reason bus)", got[0])
	}
	var last uint64
	for _, m := range got[1:] {
		switch m.Type {
		case "delta":
			if m.Seq <= last {
				t.Fatalf("seq %d after %d", m.Seq, last)
			}
			if m.Seq == uint64(fit+1) {
				t.Fatal("the refused delta was delivered")
			}
			last = m.Seq
		case "resync":
			t.Fatalf("second resync %+v", m)
		}
	}
	if last != uint64(fit+2) {
		t.Fatalf("last seq %d, want %d", last, fit+2)
	}
	if s.inbox.bytes.Load() != 0 {
		t.Fatalf("inbox bytes %d after drain", s.inbox.bytes.Load())
	}
	checkAccounting(t, s, c)
}

// blockedConn returns a subscriber of matches whose socket took nothing and whose gnet
// buffer already holds some bytes.
func blockedConn(t *testing.T, s *Shard, matches ...string) (*Conn, *fakeConn) {
	t.Helper()
	c, fc := openConn(s, 0, matches...)
	fc.buffered = codec.TextFrame([]byte(`{"type":"filler"}`))
	return c, fc
}

func TestShedDeltasKeepsOneResyncPerMatchAndControls(t *testing.T) {
	s := newTestShard(t, Options{Budget: 1 << 20, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	c, fc := blockedConn(t, s, "a", "b")
	var seq [2]uint64
	for i := range 10 {
		for j, m := range []string{"a", "b"} {
			seq[j]++
			s.enqueue(c, deltaFrame(t, m, seq[j], "normal"))
		}
		if i == 3 {
			s.enqueue(c, ControlText([]byte(`{"type":"error","code":"x","message":"y"}`)))
		}
	}
	s.enqueue(c, eventFrame(t, "a", 1))
	q := c.out
	for range 3 { // repeated shedding must not add resyncs
		s.shedDeltas(c, q, bus.ReasonSlow)
		checkAccounting(t, s, c)
	}
	var resyncs []string
	controls := 0
	for _, f := range q.state {
		switch f.Kind {
		case KindResync:
			resyncs = append(resyncs, f.Match)
		case KindControl:
			controls++
		case KindDelta:
			t.Fatalf("delta %s/%d left after shedding", f.Match, f.Seq)
		}
	}
	if len(resyncs) != 2 || resyncs[0] == resyncs[1] {
		t.Fatalf("resyncs %v, want one for a and one for b", resyncs)
	}
	if controls != 1 || len(q.low) != 1 {
		t.Fatalf("controls %d, events %d: shedding deltas must keep both", controls, len(q.low))
	}
	// Deltas queued after the shed follow the resync, and a second shed covers them with
	// the resync already queued.
	seq[0]++
	s.enqueue(c, deltaFrame(t, "a", seq[0], "high"))
	s.shedDeltas(c, q, bus.ReasonSlow)
	if n := countKind(q.state, KindResync); n != 2 {
		t.Fatalf("%d resyncs after a second shed", n)
	}
	// Once the socket drains, the peer sees the resyncs and nothing lost silently.
	fc.read(1 << 20)
	s.flush(c, s.now())
	got := fc.frames(t, true)
	saw := map[string]bool{}
	for _, m := range got {
		if m.Type == "resync" {
			saw[m.Match] = true
		}
		if m.Type == "delta" && !saw[m.Match] {
			t.Fatalf("delta %s/%d before its resync", m.Match, m.Seq)
		}
	}
	checkAccounting(t, s, c)
}

func countKind(lane []*Frame, kind FrameKind) int {
	n := 0
	for _, f := range lane {
		if f.Kind == kind {
			n++
		}
	}
	return n
}

func TestLostMatchReplacesQueuedDeltasOfThatMatchOnly(t *testing.T) {
	s := newTestShard(t, Options{Budget: 1 << 20, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	c, _ := blockedConn(t, s, "a", "b")
	other, _ := blockedConn(t, s, "b")
	for i := uint64(1); i <= 5; i++ {
		s.enqueue(c, deltaFrame(t, "a", i, "high"))
		f := deltaFrame(t, "b", i, "high")
		s.enqueue(c, f)
		s.enqueue(other, f)
	}
	s.lostMatch("a", bus.ReasonGap)
	s.lostMatch("a", bus.ReasonGap) // a second notice adds nothing
	checkAccounting(t, s, c, other)
	var a, b, resync int
	for _, f := range c.out.state {
		switch {
		case f.Kind == KindResync && f.Match == "a":
			resync++
		case f.Kind == KindDelta && f.Match == "a":
			a++
		case f.Kind == KindDelta && f.Match == "b":
			b++
		}
	}
	if a != 0 || b != 5 || resync != 1 {
		t.Fatalf("after lostMatch(a): %d deltas of a, %d of b, %d resyncs; want 0, 5, 1", a, b, resync)
	}
	if len(other.out.state) != 5 || countKind(other.out.state, KindResync) != 0 {
		t.Fatal("a subscriber of b only was touched")
	}
	s.lostMatch("nobody", bus.ReasonBus) // no subscribers: nothing happens
	s.flushDirty()
	checkAccounting(t, s, c, other)
}

func TestHighDeltaNeverWaitsBehindQueuedEvents(t *testing.T) {
	s := newTestShard(t, Options{})
	c, fc := blockedConn(t, s, "m")
	for i := range 5 {
		s.enqueue(c, eventFrame(t, "m", i))
	}
	s.enqueue(c, deltaFrame(t, "m", 1, "high"))
	fc.read(1 << 20)
	s.flush(c, s.now())
	got := fc.frames(t, false)
	if len(got) != 7 || got[1].Type != "delta" { // got[0] is what gnet held
		t.Fatalf("first queued of %d frames is %+v, want the high delta (rule 4)", len(got), got[1])
	}
	checkAccounting(t, s, c)
}

func TestSoftWatermarkDropsEventsFirst(t *testing.T) {
	s := newTestShard(t, Options{Budget: 8 << 10, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	c, fc := blockedConn(t, s, "m")
	// Over the soft watermark (4 KiB) events are refused at enqueue and dropped from the
	// queue; deltas stay until the budget.
	var seq uint64
	shed := false
	for i := range 40 {
		seq++
		s.enqueue(c, deltaFrame(t, "m", seq, "high"))
		s.enqueue(c, eventFrame(t, "m", i))
		before := c.out.bytes + fc.OutboundBuffered() // deltas and control, events aside
		for _, f := range c.out.low {
			before -= len(f.Bytes)
		}
		s.flush(c, s.now())
		checkAccounting(t, s, c)
		total := c.out.bytes + fc.OutboundBuffered()
		if total > s.opts.SoftWatermark && len(c.out.low) > 0 {
			t.Fatalf("%d bytes queued with %d events", total, len(c.out.low))
		}
		if countKind(c.out.state, KindResync) > 0 && !shed {
			shed = true
			if before <= s.opts.Budget {
				t.Fatalf("deltas shed at %d bytes, under the budget", before)
			}
		}
	}
	if countKind(c.out.state, KindResync) != 1 {
		t.Fatalf("40 deltas of ~300 B over an 8 KiB budget: %d resyncs, want 1", countKind(c.out.state, KindResync))
	}
}

func TestStallThenCut(t *testing.T) {
	s := newTestShard(t, Options{Budget: 1 << 20, StallLimit: 500 * time.Millisecond, CutLimit: 2 * time.Second})
	var closed []wire.CloseReason
	s.hooks.Closed = func(_ *Conn, r wire.CloseReason) { closed = append(closed, r) }
	c, fc := blockedConn(t, s, "m")
	postAll(s, deltaFrame(t, "m", 1, "high"))
	if len(s.blocked) != 1 {
		t.Fatal("blocked connection not listed")
	}
	start := c.out.blockedSince
	s.sweepBlocked(start + int64(400*time.Millisecond))
	if countKind(c.out.state, KindResync) != 0 {
		t.Fatal("resync before the stall limit")
	}
	s.sweepBlocked(start + int64(600*time.Millisecond))
	if countKind(c.out.state, KindResync) != 1 || countKind(c.out.state, KindDelta) != 0 {
		t.Fatal("no resync after the stall limit")
	}
	checkAccounting(t, s, c)
	cutAt := start + int64(2100*time.Millisecond)
	s.sweepBlocked(cutAt)
	if c.State() != StateClosing || fc.closes != 0 || len(s.linger) != 1 {
		t.Fatalf("state %d, closes %d, lingering %d: not cut (closing, socket kept) after the cut limit", c.State(), fc.closes, len(s.linger))
	}
	// The close frame went behind what gnet holds; nothing queued stays counted.
	if p := s.PendingBytes(); p != 0 {
		t.Fatalf("pending bytes %d after the cut", p)
	}
	// The peer reads nothing: the socket is kept until the linger ends, then reset.
	s.sweepLinger(cutAt+int64(time.Second), false)
	if fc.closes != 0 {
		t.Fatal("closed before the linger ended although the peer read nothing")
	}
	s.sweepLinger(cutAt+int64(DefaultCloseLinger+time.Second), false)
	if fc.closes != 1 || fc.linger == nil || *fc.linger != 0 || len(s.linger) != 0 {
		t.Fatalf("after the linger: closes %d, linger %v, lingering %d; want one reset (SetLinger(0))", fc.closes, fc.linger, len(s.linger))
	}
	s.Closed(c)
	if len(closed) != 1 || closed[0] != wire.ReasonSlow || closed[0].Code() != 4008 {
		t.Fatalf("closed %v, want slow_consumer (4008)", closed)
	}
	s.sweepBlocked(start + int64(2200*time.Millisecond))
	if len(s.blocked) != 0 {
		t.Fatal("closed connection still listed")
	}
	// The close frame is the last thing gnet was handed.
	fc.read(1 << 20)
	got := fc.frames(t, false)
	if last := got[len(got)-1]; last.Code != 4008 {
		t.Fatalf("last frame %+v, want close 4008", last)
	}
}

// A cut slow consumer that reads again within the linger gets the close frame and a
// graceful close (no reset) as soon as everything it was sent is read.
func TestCutConsumerThatReadsAgainClosesGracefully(t *testing.T) {
	s := newTestShard(t, Options{Budget: 1 << 20, StallLimit: 500 * time.Millisecond, CutLimit: 2 * time.Second})
	c, fc := blockedConn(t, s, "m")
	postAll(s, deltaFrame(t, "m", 1, "high"))
	cutAt := c.out.blockedSince + int64(2100*time.Millisecond)
	s.sweepBlocked(cutAt)
	if c.State() != StateClosing || fc.closes != 0 {
		t.Fatalf("state %d, closes %d: want closing with the socket kept", c.State(), fc.closes)
	}
	if subs := s.index["m"]; subs != nil && len(subs.conns) != 0 {
		t.Fatalf("a lingering connection is still among the subscribers (%d)", len(subs.conns))
	}
	s.sweepLinger(cutAt+int64(100*time.Millisecond), false)
	if fc.closes != 0 {
		t.Fatal("closed while gnet still held the close frame")
	}
	fc.read(1 << 20)
	s.sweepLinger(cutAt+int64(200*time.Millisecond), false)
	if fc.closes != 1 || fc.linger != nil {
		t.Fatalf("after the peer read everything: closes %d, linger %v; want one graceful close", fc.closes, fc.linger)
	}
	got := fc.frames(t, false)
	if last := got[len(got)-1]; last.Code != 4008 {
		t.Fatalf("last frame %+v, want close 4008", last)
	}
	// CloseAll (shutdown) resets whatever still lingers.
	c2, fc2 := blockedConn(t, s, "m")
	s.Close(c2, wire.ReasonSlow)
	s.CloseAll(wire.ReasonShutdown)
	if fc2.closes != 1 || fc2.linger == nil || *fc2.linger != 0 {
		t.Fatalf("shutdown with a lingering connection: closes %d, linger %v; want a reset", fc2.closes, fc2.linger)
	}
}

// A burst larger than the budget reaching an idle socket must not land in gnet's
// unbounded buffer: what the socket does not take stays in our lanes, where the budget
// applies (regression: the whole batch was written and gnet held it all).
func TestBurstOverBudgetIsNotBufferedByGnet(t *testing.T) {
	s := newTestShard(t, Options{Budget: 16 << 10, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	slow, sfc := openConn(s, 4<<10, "m") // the socket takes 4 KiB, then is full
	fast, ffc := openConn(s, -1, "m")
	var frames []*Frame
	for i := uint64(1); i <= 400; i++ { // ~120 KB in one drain
		frames = append(frames, deltaFrame(t, "m", i, "high"))
	}
	postAll(s, frames...)
	if ob := sfc.OutboundBuffered(); ob > s.opts.Budget {
		t.Fatalf("gnet holds %d bytes for the slow connection, budget %d", ob, s.opts.Budget)
	}
	if slow.out == nil || countKind(slow.out.state, KindResync) != 1 || countKind(slow.out.state, KindDelta) != 0 {
		t.Fatal("slow connection: the rest of the burst was not replaced by one resync")
	}
	checkAccounting(t, s, slow, fast)
	// A socket that takes everything gets everything, in order, with no resync.
	got := ffc.frames(t, false)
	if len(got) != 400 || got[399].Seq != 400 {
		t.Fatalf("fast connection got %d frames", len(got))
	}
	if ffc.writes > 1+400*len(frames[0].Bytes)/s.opts.Budget {
		t.Fatalf("fast connection: %d writes", ffc.writes)
	}
	// The slow peer reads everything: deltas in order, then the resync, nothing after a
	// gap without it.
	sfc.read(1 << 20)
	s.sweepBlocked(s.now())
	msgs := sfc.frames(t, false)
	var last uint64
	resynced := false
	for _, m := range msgs {
		switch m.Type {
		case "resync":
			resynced = true
		case "delta":
			if m.Seq != last+1 && !resynced {
				t.Fatalf("seq %d after %d without resync", m.Seq, last)
			}
			last = m.Seq
		}
	}
	if !resynced {
		t.Fatal("slow peer never saw the resync")
	}
	checkAccounting(t, s, slow, fast)
}

func TestPendingBytesBalanceAfterUnsubscribeAndClose(t *testing.T) {
	s := newTestShard(t, Options{Budget: 1 << 20, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	a, _ := blockedConn(t, s, "m", "n")
	b, _ := blockedConn(t, s, "m")
	for i := uint64(1); i <= 5; i++ {
		fm, fn := deltaFrame(t, "m", i, "high"), deltaFrame(t, "n", i, "high")
		s.enqueue(a, fm)
		s.enqueue(a, fn)
		s.enqueue(b, fm)
		s.enqueue(a, eventFrame(t, "m", int(i)))
	}
	s.flushDirty()
	checkAccounting(t, s, a, b)
	s.Unsubscribe(a, "m")
	checkAccounting(t, s, a, b)
	s.Close(b, wire.ReasonSlow)
	checkAccounting(t, s, a)
	s.Close(a, wire.ReasonShutdown) // state frames are handed to gnet, events dropped
	if p := s.PendingBytes(); p != 0 {
		t.Fatalf("pending bytes %d after every connection closed", p)
	}
	s.Closed(a)
	s.Closed(b)
	s.sweepBlocked(s.now())
	if p := s.PendingBytes(); p != 0 {
		t.Fatalf("pending bytes %d", p)
	}
}

// A queue given back when its connection closes is reused by the next connection and
// carries nothing over.
func TestQueueReuseAfterCloseCarriesNothing(t *testing.T) {
	s := newTestShard(t, Options{})
	c, fc := openConn(s, -1, "m")
	// The write fails and gnet closes the connection inside Write.
	fc.onWrite = func() { fc.onWrite = nil; s.Closed(c) }
	postAll(s, deltaFrame(t, "m", 1, "high"), deltaFrame(t, "m", 2, "high"))
	if c.State() != StateClosed {
		t.Fatal("not closed")
	}
	d, dfc := openConn(s, -1, "m")
	postAll(s, deltaFrame(t, "m", 3, "high"))
	got := dfc.frames(t, false)
	if len(got) != 1 || got[0].Seq != 3 {
		t.Fatalf("new connection got %+v", got)
	}
	checkAccounting(t, s, d)
}

// The `subscribed` answer is encoded once per match and shared, like bus frames.
func TestSubscribedFrameIsShared(t *testing.T) {
	s := newTestShard(t, Options{})
	openConn(s, -1, "m1")
	openConn(s, -1, "m1")
	a, b := s.SubscribedFrame("m1"), s.SubscribedFrame("m1")
	if a != b {
		t.Fatal("two subscribers of m1 got two encodings of `subscribed`")
	}
	if want := string(codec.TextFrame(wire.Subscribed("m1"))); string(a.Bytes) != want {
		t.Fatalf("subscribed frame %q, want %q", a.Bytes, want)
	}
	if s.SubscribedFrame("m2") == s.SubscribedFrame("m2") {
		t.Fatal("a match without subscribers must not keep a cached frame")
	}
}
