package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"crease/bus"
)

// A tiny Cricsheet writer for hand-made matches. Teams are "A" and "B".

type obj = map[string]any

// ball is a delivery of r runs off the bat.
func ball(bat, ns, bowl string, r int) obj {
	return obj{"batter": bat, "non_striker": ns, "bowler": bowl,
		"runs": obj{"batter": r, "extras": 0, "total": r}}
}

// ext adds n extras of kind (wides, noballs, byes, legbyes, penalty) to d.
func ext(d obj, kind string, n int) obj {
	e, _ := d["extras"].(obj)
	if e == nil {
		e = obj{}
		d["extras"] = e
	}
	e[kind] = n
	r := d["runs"].(obj)
	r["extras"] = r["extras"].(int) + n
	r["total"] = r["total"].(int) + n
	return d
}

// out adds a wicket to d.
func out(d obj, player, kind string, fielders ...string) obj {
	w := obj{"player_out": player, "kind": kind}
	if len(fielders) > 0 {
		var fs []any
		for _, f := range fielders {
			fs = append(fs, obj{"name": f})
		}
		w["fielders"] = fs
	}
	ws, _ := d["wickets"].([]any)
	d["wickets"] = append(ws, w)
	return d
}

// over is over number n.
func over(n int, ds ...obj) obj {
	var a []any
	for _, d := range ds {
		a = append(a, d)
	}
	return obj{"over": n, "deliveries": a}
}

func inns(team string, overs ...obj) obj {
	var a []any
	for _, o := range overs {
		a = append(a, o)
	}
	return obj{"team": team, "overs": a}
}

// doc is a match between A and B with the given outcome and innings.
// superOver is a super over of team: one over of b1 and b2 facing bowler, a ball for
// each of runs.
func superOver(team, b1, b2, bowler string, runs ...int) obj {
	var ds []obj
	for _, r := range runs {
		ds = append(ds, ball(b1, b2, bowler, r))
	}
	in := inns(team, over(0, ds...))
	in["super_over"] = true
	return in
}

func doc(outcome obj, innings ...obj) obj {
	var a []any
	for _, i := range innings {
		a = append(a, i)
	}
	return obj{
		"meta": obj{"data_version": "1.1.0", "created": "2024-01-01", "revision": 1},
		"info": obj{
			"balls_per_over": 6, "dates": []any{"2024-01-02"}, "event": obj{"name": "Test Cup 2024", "stage": "Final"},
			"match_type": "T20", "overs": 20, "outcome": outcome, "teams": []any{"A", "B"},
			"toss": obj{"winner": "A", "decision": "bat"}, "venue": "Ground",
		},
		"innings": a,
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustRead(t testing.TB, name string, v any) *Match {
	t.Helper()
	m, err := ReadMatch(name, mustJSON(t, v))
	if err != nil {
		t.Fatalf("ReadMatch: %v", err)
	}
	return m
}

// sixBalls is a legal over of dots by bowler to bat/ns.
func dots(bat, ns, bowl string, n int) []obj {
	var ds []obj
	for range n {
		ds = append(ds, ball(bat, ns, bowl, 0))
	}
	return ds
}

// canon re-encodes JSON so that equal documents compare equal as bytes.
func canon(t testing.TB, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("canon %s: %v", b, err)
	}
	out, _ := json.Marshal(v)
	return out
}

// sameJSON reports whether a and b are the same JSON document.
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// checkChain steps m through n updates from seq first and checks the protocol invariants:
// each frame passes bus.Parse with the right match, seq, prio and patch; applying every
// patch in order to the base reproduces every state exactly; seqs are gap-free; events
// are valid low frames. It returns the updates.
func checkChain(t testing.TB, m *Match, first uint64, base []byte, n int) []Update {
	t.Helper()
	st, err := NewStepper(m, first, base)
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("{}")
	if base != nil {
		doc = base
	}
	ts := time.Unix(1_700_000_000, 0)
	var us []Update
	want := first
	if want == 0 {
		want = 1
	}
	for i := range n {
		u, err := st.Next(ts.Add(time.Duration(i) * time.Millisecond))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if u.Delta.Seq != want {
			t.Fatalf("step %d: seq %d, want %d", i, u.Delta.Seq, want)
		}
		want++
		msg, err := bus.Parse(u.Delta.Frame)
		if err != nil {
			t.Fatalf("seq %d: frame %s: %v", u.Delta.Seq, u.Delta.Frame, err)
		}
		if msg.Kind != bus.KindDelta || msg.Match != m.ID() || msg.Seq != u.Delta.Seq || msg.Prio != u.Prio || u.Delta.Match != m.ID() {
			t.Fatalf("seq %d: parsed %+v from %s", u.Delta.Seq, msg, u.Delta.Frame)
		}
		var frame struct {
			Patch json.RawMessage `json:"patch"`
			TS    int64           `json:"ts"`
		}
		if err := json.Unmarshal(u.Delta.Frame, &frame); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(frame.Patch, u.Patch) {
			t.Fatalf("seq %d: frame patch %s != update patch %s", u.Delta.Seq, frame.Patch, u.Patch)
		}
		doc, err = jsonpatch.MergePatch(doc, frame.Patch)
		if err != nil {
			t.Fatalf("seq %d: apply: %v", u.Delta.Seq, err)
		}
		if !sameJSON(t, doc, u.Delta.State) {
			t.Fatalf("seq %d: patched state\n%s\n!= stepped state\n%s", u.Delta.Seq, doc, u.Delta.State)
		}
		if u.Event != nil {
			em, err := bus.Parse(u.Event)
			if err != nil || em.Kind != bus.KindEvent || em.Prio != bus.PrioLow || em.Match != m.ID() || em.TS != frame.TS {
				t.Fatalf("seq %d: event %s: %+v %v", u.Delta.Seq, u.Event, em, err)
			}
			var ev map[string]any
			_ = json.Unmarshal(u.Event, &ev)
			if ev["kind"] != "commentary" || ev["text"] != u.Text || ev["over"] != u.Over {
				t.Fatalf("seq %d: event %s", u.Delta.Seq, u.Event)
			}
		}
		us = append(us, u)
	}
	return us
}

// final steps a match to its end and returns the final state as decoded from the deltas.
func final(t testing.TB, m *Match) *State {
	t.Helper()
	us := checkChain(t, m, 1, nil, m.Steps())
	last := us[len(us)-1]
	if !last.Last {
		t.Fatalf("last of %d steps is not marked Last", len(us))
	}
	var st State
	if err := json.Unmarshal(last.Delta.State, &st); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&st, m.Final()) {
		t.Fatalf("stepped final state differs from Match.Final")
	}
	return &st
}

// fakePub is an in-memory bus.Publisher with the store's seq rule.
type fakePub struct {
	mu       sync.Mutex
	seq      map[string]uint64
	state    map[string][]byte
	title    map[string]string
	frames   map[string][][]byte
	events   map[string][][]byte
	failAt   uint64 // PublishDelta of this seq fails with failErr
	failErr  error
	eventErr error
	onDelta  func(bus.Delta)
}

func newFakePub() *fakePub {
	return &fakePub{seq: map[string]uint64{}, state: map[string][]byte{}, title: map[string]string{},
		frames: map[string][][]byte{}, events: map[string][][]byte{}}
}

func (p *fakePub) PublishDelta(ctx context.Context, d bus.Delta) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d.Seq == p.failAt && p.failErr != nil {
		return p.failErr
	}
	if d.Seq != p.seq[d.Match]+1 {
		return fmt.Errorf("fake: %s seq %d after %d: %w", d.Match, d.Seq, p.seq[d.Match], bus.ErrSeqConflict)
	}
	if _, err := bus.Parse(d.Frame); err != nil {
		return err
	}
	p.seq[d.Match] = d.Seq
	p.state[d.Match] = d.State
	if d.Title != "" {
		p.title[d.Match] = d.Title
	}
	p.frames[d.Match] = append(p.frames[d.Match], d.Frame)
	if p.onDelta != nil {
		p.onDelta(d)
	}
	return nil
}

func (p *fakePub) PublishEvent(ctx context.Context, match string, frame []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.eventErr != nil {
		return p.eventErr
	}
	p.events[match] = append(p.events[match], frame)
	return nil
}

func (p *fakePub) count(match string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.frames[match])
}

func itoa(n int) string { return fmt.Sprint(n) }

// replayAll replays every match onto pub at once and returns each one's error.
func replayAll(ms []*Match, pub bus.Publisher) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Replay(context.Background(), pub, m, ReplayOptions{})
		}()
	}
	wg.Wait()
	return errs
}

// stateAfterSteps is the state a replay of m holds after its first n steps.
func stateAfterSteps(m *Match, n int) []byte {
	st, _ := NewStepper(m, 1, nil)
	var u Update
	for range n {
		u, _ = st.Next(time.Now())
	}
	return u.Delta.State
}
