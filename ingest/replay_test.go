package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"crease/bus"
)

func embedded(t testing.TB) []*Match {
	t.Helper()
	ms, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// small is a quick two-innings match for replay tests.
func small(t testing.TB, id string) *Match {
	t.Helper()
	m, err := ReadMatchID(id, id+".json", mustJSON(t, doc(winA(1),
		inns("A", over(0, ball("a1", "a2", "b1", 4), ball("a1", "a2", "b1", 1))),
		inns("B", over(0, ball("b1", "b2", "a1", 2), out(ball("b1", "b2", "a1", 0), "b1", "bowled"))),
	)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// replayState rebuilds a match's state from the frames a publisher got.
func replayState(t testing.TB, frames [][]byte) []byte {
	t.Helper()
	doc := []byte("{}")
	for _, f := range frames {
		var fr struct {
			Patch json.RawMessage `json:"patch"`
		}
		if err := json.Unmarshal(f, &fr); err != nil {
			t.Fatal(err)
		}
		var err error
		if doc, err = jsonpatch.MergePatch(doc, fr.Patch); err != nil {
			t.Fatal(err)
		}
	}
	return doc
}

func TestReplayConcurrentMatches(t *testing.T) {
	pub := newFakePub()
	ms := embedded(t)
	errs := replayAll(ms, pub)
	for i, m := range ms {
		if errs[i] != nil {
			t.Fatalf("%s: %v", m.ID(), errs[i])
		}
		if n := pub.count(m.ID()); n != m.Steps() || pub.seq[m.ID()] != uint64(m.Steps()) {
			t.Errorf("%s: %d deltas, seq %d, want %d", m.ID(), n, pub.seq[m.ID()], m.Steps())
		}
		if len(pub.events[m.ID()]) != m.Steps() {
			t.Errorf("%s: %d events for %d deltas", m.ID(), len(pub.events[m.ID()]), m.Steps())
		}
		if pub.title[m.ID()] != m.Title() {
			t.Errorf("%s: title %q", m.ID(), pub.title[m.ID()])
		}
		got := canon(t, replayState(t, pub.frames[m.ID()]))
		if want := canon(t, mustJSON(t, m.Final())); !bytes.Equal(got, want) || !bytes.Equal(canon(t, pub.state[m.ID()]), want) {
			t.Errorf("%s: the frames do not rebuild the final state", m.ID())
		}
	}
}

func TestReplayLoopsAndResumes(t *testing.T) {
	m := small(t, "loop")
	steps := uint64(m.Steps())
	pub := newFakePub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Stop once two play-throughs and a bit are out.
	pub.onDelta = func(d bus.Delta) {
		if d.Seq == 2*steps+3 {
			cancel()
		}
	}
	err := Replay(ctx, pub, m, ReplayOptions{Loop: true, LoopPause: time.Millisecond})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Replay: %v", err)
	}
	if got := pub.seq["loop"]; got != 2*steps+3 {
		t.Fatalf("seq %d, want %d", got, 2*steps+3)
	}
	// Frames 1..2*steps+3 rebuild the state of the third play-through, step 3.
	want := stateAfterSteps(m, 3)
	if got := replayState(t, pub.frames["loop"]); !bytes.Equal(canon(t, got), canon(t, want)) {
		t.Fatalf("after two loops\n%s\nwant\n%s", got, want)
	}

	// Resume from the stored snapshot: seq goes on, the first patch resets that state.
	stored := pub.state["loop"]
	err = Replay(context.Background(), pub, m, ReplayOptions{StartSeq: pub.seq["loop"] + 1, Base: stored})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if got := pub.seq["loop"]; got != 3*steps+3 {
		t.Fatalf("seq %d after resuming", got)
	}
	if got := replayState(t, pub.frames["loop"]); !bytes.Equal(canon(t, got), canon(t, mustJSON(t, m.Final()))) {
		t.Fatalf("after resuming\n%s", got)
	}
}

func TestReplayStopsOnSeqConflict(t *testing.T) {
	m := small(t, "conflict")
	pub := newFakePub()
	pub.seq["conflict"] = 7 // another publisher got there first
	err := Replay(context.Background(), pub, m, ReplayOptions{})
	if !errors.Is(err, bus.ErrSeqConflict) {
		t.Fatalf("Replay: %v, want ErrSeqConflict", err)
	}
	if pub.count("conflict") != 0 {
		t.Fatalf("published after a conflict")
	}
	want := "ingest: replay of conflict stopped: delta 1 refused"
	if got := err.Error(); len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("error %q", got)
	}
	// Any other publish error stops too, wrapped; a failing event does not.
	pub = newFakePub()
	pub.failAt, pub.failErr = 3, errors.New("disk on fire")
	pub.eventErr = errors.New("events dropped")
	err = Replay(context.Background(), pub, m, ReplayOptions{})
	if !errors.Is(err, pub.failErr) || pub.count("conflict") != 2 {
		t.Fatalf("Replay: %v after %d deltas", err, pub.count("conflict"))
	}
	pub = newFakePub()
	pub.eventErr = fmt.Errorf("wrapped: %w", bus.ErrClosed)
	if err := Replay(context.Background(), pub, m, ReplayOptions{}); !errors.Is(err, bus.ErrClosed) || pub.count("conflict") != 1 {
		t.Fatalf("closed bus: %v after %d deltas", err, pub.count("conflict"))
	}
}

func TestReplayPacing(t *testing.T) {
	m := small(t, "paced")
	pub := newFakePub()
	start := time.Now()
	// 7 deltas at 200 a second: 6 pauses of 5 ms.
	if err := Replay(context.Background(), pub, m, ReplayOptions{Speed: 200}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("%d deltas at 200/s took %v", m.Steps(), el)
	}
	// Real time is stopped by the context, not by the end of the match.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	pub = newFakePub()
	if err := Replay(ctx, pub, m, ReplayOptions{Speed: RealTime}); !errors.Is(err, context.DeadlineExceeded) || pub.count("paced") != 1 {
		t.Fatalf("real time: %v, %d deltas", err, pub.count("paced"))
	}
	// ts comes from the clock option.
	pub = newFakePub()
	clock := time.UnixMicro(1_234_567)
	if err := Replay(context.Background(), pub, m, ReplayOptions{Now: func() time.Time { return clock }}); err != nil {
		t.Fatal(err)
	}
	msg, _ := bus.Parse(pub.frames["paced"][0])
	if msg.TS != 1_234_567 {
		t.Errorf("ts %d", msg.TS)
	}
}

func TestReplayOptionsRefused(t *testing.T) {
	m := small(t, "opts")
	for _, c := range []struct {
		opts ReplayOptions
		err  error
	}{
		{ReplayOptions{Speed: -1}, ErrBadSpeed},
		{ReplayOptions{Speed: posInf()}, ErrBadSpeed},
		{ReplayOptions{LoopPause: -time.Second}, ErrBadLoopPause},
		{ReplayOptions{Base: json.RawMessage(`[1]`)}, ErrBadBase},
	} {
		if err := Replay(context.Background(), newFakePub(), m, c.opts); !errors.Is(err, c.err) {
			t.Errorf("%+v: %v, want %v", c.opts, err, c.err)
		}
	}
	if err := Replay(context.Background(), newFakePub(), nil, ReplayOptions{}); !errors.Is(err, ErrNoMatch) {
		t.Errorf("nil match: %v", err)
	}
}

func posInf() float64 { return math.Inf(1) }

// stoppingPub ends the replay's context while it publishes the delta of seq at, and
// records whether the publishes of that ball saw a context already done.
type stoppingPub struct {
	*fakePub
	cancel     context.CancelFunc
	at         uint64
	inBall     bool
	doneInBall bool
}

func (p *stoppingPub) PublishDelta(ctx context.Context, d bus.Delta) error {
	if d.Seq == p.at {
		p.cancel()
		p.inBall = true
	}
	p.doneInBall = p.doneInBall || (p.inBall && ctx.Err() != nil)
	return p.fakePub.PublishDelta(ctx, d)
}

func (p *stoppingPub) PublishEvent(ctx context.Context, match string, frame []byte) error {
	p.doneInBall = p.doneInBall || (p.inBall && ctx.Err() != nil)
	return p.fakePub.PublishEvent(ctx, match, frame)
}

// Stopping a replay while a ball is being published finishes that ball (its delta and
// its event, with a context that is not done) and publishes no other: a write abandoned
// mid-flight could land after Replay returned.
func TestStopFinishesTheBallInFlight(t *testing.T) {
	m := small(t, "stop")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := &stoppingPub{fakePub: newFakePub(), cancel: cancel, at: 2}
	err := Replay(ctx, pub, m, ReplayOptions{Loop: true, LoopPause: time.Millisecond})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Replay: %v", err)
	}
	if got := pub.seq["stop"]; got != 2 {
		t.Fatalf("seq %d, want 2: the ball in flight and no other", got)
	}
	if pub.doneInBall {
		t.Fatal("the ball in flight was published with a context already done")
	}
}
