package ingest

import (
	"encoding/json"
	"errors"
	"testing"

	"crease/internal/livefeed"
)

// matchData is the file of the real match id, as ingest/matches (and EmbeddedFile)
// holds it.
func matchData(t testing.TB, id string) []byte {
	t.Helper()
	data, err := EmbeddedFile(id)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// liveFeed turns a match file into what a score provider posts: the info without its
// outcome, every ball at its position, then the info with the outcome.
func liveFeed(t testing.TB, data []byte) (start, end json.RawMessage, balls []BallPost) {
	t.Helper()
	f, err := livefeed.FromFile(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range f.Balls {
		p, err := DecodeBall(body)
		if err != nil {
			t.Fatal(err)
		}
		balls = append(balls, p)
	}
	return f.Start, f.End, balls
}

// liveAfter is a Live of match m1 from start with balls applied.
func liveAfter(t testing.TB, start json.RawMessage, balls []BallPost) *Live {
	t.Helper()
	l, err := NewLive("m1", start)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range balls {
		if _, _, _, _, err := l.Ball(b, 0); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func stateJSON(t testing.TB, s *State) []byte {
	t.Helper()
	return canon(t, s.marshal())
}

// A match posted ball by ball ends identical to the same match replayed from its file,
// and its journal rebuilds it exactly.
func TestLiveEqualsFile(t *testing.T) {
	for _, name := range []string{"1298150", "1359539", "335982"} {
		data := matchData(t, name)
		m, err := ReadMatch(name+".json", data)
		if err != nil {
			t.Fatal(err)
		}
		start, end, balls := liveFeed(t, data)
		l, err := NewLive(name, start)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range balls {
			res, _, _, _, err := l.Ball(b, 0)
			if err != nil || res != BallApplied {
				t.Fatalf("%s %s: %v %v", name, b.BallPos, res, err)
			}
		}
		mid := stateJSON(t, l.State())
		rebuilt, err := NewLiveFromJournal(name, l.Journal())
		if err != nil {
			t.Fatal(err)
		}
		if got := stateJSON(t, rebuilt.State()); string(got) != string(mid) {
			t.Fatalf("%s: rebuilt from the journal\n%s\n!= live\n%s", name, got, mid)
		}
		if err := l.SetInfo(end); err != nil {
			t.Fatal(err)
		}
		if got, want := stateJSON(t, l.State()), stateJSON(t, m.Final()); string(got) != string(want) {
			t.Fatalf("%s: live final\n%s\n!= file final\n%s", name, got, want)
		}
		// A ball after the result is out of order.
		if _, _, _, _, err := l.Ball(BallPost{BallPos: BallPos{Innings: 3, Over: 0, Ball: 1}, Team: balls[0].Team, Delivery: balls[0].Delivery}, 0); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("ball after the result: %v", err)
		}
	}
}

func TestLiveDuplicatesCorrectionsAndRefusals(t *testing.T) {
	data := matchData(t, "1298150")
	start, _, balls := liveFeed(t, data)
	l := liveAfter(t, start, balls[:30])
	before := stateJSON(t, l.State())
	// A retry of an applied ball changes nothing.
	if res, _, _, _, err := l.Ball(balls[10], 0); err != nil || res != BallDuplicate {
		t.Fatalf("duplicate: %v %v", res, err)
	}
	if string(stateJSON(t, l.State())) != string(before) {
		t.Fatal("a duplicate changed the state")
	}
	// Skipped positions are out of order.
	for _, pos := range []BallPos{{1, balls[29].Over, balls[29].Ball + 2}, {1, balls[29].Over + 2, 1}, {3, 0, 1}, {2, 1, 1}} {
		p := balls[30]
		p.BallPos = pos
		if _, _, _, _, err := l.Ball(p, 0); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("%s: %v", pos, err)
		}
	}
	// Impossible input changes nothing.
	bad := []string{
		`{"batter":"Babar Azam","bowler":"B Kumar","non_striker":"Mohammad Rizwan","runs":{"batter":-1,"extras":0,"total":-1}}`,
		`{"batter":"X","bowler":"B Kumar","non_striker":"X","runs":{"batter":0,"extras":0,"total":0}}`,
		`{"batter":"A","bowler":"B","non_striker":"C","runs":{"batter":0,"extras":0,"total":0},"bogus":1}`,
	}
	for _, d := range bad {
		p := balls[30]
		p.Delivery = json.RawMessage(d)
		if _, _, _, _, err := l.Ball(p, 0); !errors.Is(err, ErrImpossible) && !errors.Is(err, ErrBadBall) {
			t.Errorf("%s: %v", d, err)
		}
	}
	if string(stateJSON(t, l.State())) != string(before) || l.Balls() != 30 {
		t.Fatal("a refused ball changed the state")
	}
	// A correction: ball 5 becomes a four; the state equals a from-scratch computation
	// of the corrected list.
	var d map[string]any
	_ = json.Unmarshal(balls[4].Delivery, &d)
	d["runs"] = map[string]any{"batter": 4, "extras": 0, "total": 4}
	delete(d, "extras")
	delete(d, "wickets")
	fixed := balls[4]
	fixed.Delivery = mustJSON(t, d)
	res, _, _, _, err := l.Ball(fixed, 0)
	if err != nil || res != BallCorrection {
		t.Fatalf("correction: %v %v", res, err)
	}
	scratch, err := NewLive("m1", start)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range balls[:30] {
		if i == 4 {
			b = fixed
		}
		if _, _, _, _, err := scratch.Ball(b, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := stateJSON(t, l.State()), stateJSON(t, scratch.State()); string(got) != string(want) {
		t.Fatalf("corrected\n%s\n!= from scratch\n%s", got, want)
	}
	rebuilt, err := NewLiveFromJournal("m1", l.Journal())
	if err != nil {
		t.Fatal(err)
	}
	if string(stateJSON(t, rebuilt.State())) != string(stateJSON(t, l.State())) {
		t.Fatal("journal after a correction does not rebuild the state")
	}
}
