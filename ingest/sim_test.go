package ingest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"crease/bus"
)

func TestSimulatorOptions(t *testing.T) {
	for _, c := range []struct {
		opts SimOptions
		err  error
	}{
		{SimOptions{Prefix: "bad prefix"}, ErrSimPrefix},
		{SimOptions{Prefix: strings.Repeat("x", 60)}, ErrSimPrefix},
		{SimOptions{Overs: 51}, ErrSimOvers},
		{SimOptions{Overs: -1}, ErrSimOvers},
	} {
		if _, err := NewSimulator(c.opts); !errors.Is(err, c.err) {
			t.Errorf("%+v: %v, want %v", c.opts, err, c.err)
		}
	}
	s, err := NewSimulator(SimOptions{})
	if err != nil || s.ID(1) != "sim-1" {
		t.Fatalf("defaults: %v %q", err, s.ID(1))
	}
}

func TestSimulatorIsPlausibleAndReproducible(t *testing.T) {
	s, _ := NewSimulator(SimOptions{Seed: 42})
	a, err := s.Match(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Match(1, 0)
	c, _ := s.Match(1, 1)
	s2, _ := NewSimulator(SimOptions{Seed: 43})
	d, _ := s2.Match(1, 0)
	ja, jb := mustJSON(t, a.Final()), mustJSON(t, b.Final())
	if !bytes.Equal(ja, jb) {
		t.Fatal("same seed, id and game gave different matches")
	}
	if bytes.Equal(ja, mustJSON(t, c.Final())) || bytes.Equal(ja, mustJSON(t, d.Final())) {
		t.Fatal("another game or seed gave the same match")
	}
	if a.ID() != "sim-1" {
		t.Fatalf("id %q", a.ID())
	}
	checkChain(t, a, 1, nil, a.Steps())
	ties := 0
	for game := range uint64(60) {
		m, err := s.Match(3, game)
		if err != nil {
			t.Fatalf("game %d: %v", game, err)
		}
		st := m.Final()
		i1, i2 := st.Innings["1"], st.Innings["2"]
		if i1 == nil || i2 == nil || i1.Team == i2.Team || i1.Balls > 120 || i2.Balls > 120 || i1.Wickets > 10 || i2.Wickets > 10 {
			t.Fatalf("game %d: implausible innings %+v %+v", game, i1, i2)
		}
		if i1.Runs < 40 || i1.Runs > 320 {
			t.Errorf("game %d: first innings %d runs", game, i1.Runs)
		}
		if i1.Wickets < 10 && i1.Balls != 120 {
			t.Errorf("game %d: first innings stopped at %d/%d after %d balls", game, i1.Runs, i1.Wickets, i1.Balls)
		}
		switch {
		case i2.Runs > i1.Runs:
			if st.Winner != i2.Team || !strings.HasSuffix(st.Result, "wickets") && !strings.HasSuffix(st.Result, "wicket") {
				t.Errorf("game %d: %d v %d: %q", game, i1.Runs, i2.Runs, st.Result)
			}
			if i2.Runs-i1.Runs > 6 {
				t.Errorf("game %d: chase went on past the target: %d v %d", game, i1.Runs, i2.Runs)
			}
		case i2.Runs < i1.Runs:
			if st.Winner != i1.Team || !strings.Contains(st.Result, "by") || !strings.Contains(st.Result, "run") {
				t.Errorf("game %d: %d v %d: %q", game, i1.Runs, i2.Runs, st.Result)
			}
		default:
			ties++
			if !strings.HasPrefix(st.Result, "Match tied") || len(st.Innings) < 4 || !st.Innings["3"].SuperOver {
				t.Errorf("game %d: tie %q with %d innings", game, st.Result, len(st.Innings))
			}
		}
	}
	t.Logf("%d ties in 60 games", ties)
}

func TestSimulatorReplaysEndlessly(t *testing.T) {
	s, _ := NewSimulator(SimOptions{Seed: 7, Overs: 2})
	m0, _ := s.Match(5, 0)
	m1, _ := s.Match(5, 1)
	stop := uint64(m0.Steps() + m1.Steps() + 2)
	pub := newFakePub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub.onDelta = func(d bus.Delta) {
		if d.Seq == stop {
			cancel()
		}
	}
	if err := s.Replay(ctx, pub, 5, ReplayOptions{LoopPause: time.Millisecond}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Replay: %v", err)
	}
	if pub.seq["sim-5"] != stop {
		t.Fatalf("seq %d, want %d", pub.seq["sim-5"], stop)
	}
	// The frames rebuild game 2 after its second step, so game 1 was another match.
	st, _ := s.Match(5, 2)
	want := stateAfterSteps(st, 2)
	if got := replayState(t, pub.frames["sim-5"]); !bytes.Equal(canon(t, got), canon(t, want)) {
		t.Fatalf("rebuilt\n%s\nwant\n%s", got, want)
	}
}

// A catch by the bowler reads "c & b", never "c X b X".
func TestSimulatorCaughtByTheBowler(t *testing.T) {
	sim, err := NewSimulator(SimOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	candb := 0
	for g := uint64(0); g < 40; g++ {
		m, err := sim.Match(1, g)
		if err != nil {
			t.Fatal(err)
		}
		for _, card := range m.Final().Innings {
			for name, bat := range card.Batters {
				if strings.HasPrefix(bat.Out, "c & b ") {
					candb++
				}
				if f, b, ok := strings.Cut(strings.TrimPrefix(bat.Out, "c "), " b "); ok && f == b {
					t.Fatalf("game %d: %s %q", g, name, bat.Out)
				}
			}
		}
	}
	if candb == 0 {
		t.Fatal("no caught and bowled in 40 games")
	}
}
