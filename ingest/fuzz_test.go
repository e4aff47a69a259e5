package ingest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"crease/bus"
)

// FuzzReadMatch: ReadMatch never panics, refuses only with an *Error naming the file, and
// a match it accepts steps to its end with valid frames.
func FuzzReadMatch(f *testing.F) {
	// The real files are tested elsewhere; small seeds keep the fuzzer fast.
	data := matchData(f, "335982")
	f.Add(data[:4096])
	f.Add(mustJSON(f, doc(winA(1),
		inns("A", over(0, ext(ball("a1", "a2", "b1", 0), "wides", 1), out(ball("a1", "a2", "b1", 1), "a2", "run out", "f"))),
		inns("B", over(0, ext(ball("b1", "b2", "a1", 4), "noballs", 1))))))
	f.Add(mustJSON(f, doc(obj{"result": "no result"})))
	f.Add([]byte(`{"meta":{},"info":{"teams":["A","B"],"outcome":{"result":"tie","eliminator":"B"}},"innings":[{"team":"A","super_over":true,"overs":[{"over":0,"deliveries":[{"batter":"x","non_striker":"y","bowler":"z","runs":{"batter":1,"extras":0,"total":1}}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadMatch("f.json", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "f.json" || !errors.Is(err, ErrInvalidMatch) {
				t.Fatalf("refusal %T %v", err, err)
			}
			return
		}
		if m.Steps() > 300 {
			return // stepping is covered by the other tests; keep executions fast
		}
		st, err := NewStepper(m, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range m.Steps() {
			u, err := st.Next(time.Unix(0, 0))
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if _, err := bus.Parse(u.Delta.Frame); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if u.Last != (i == m.Steps()-1) {
				t.Fatalf("step %d of %d: Last %v", i, m.Steps(), u.Last)
			}
			if i == m.Steps()-1 && !json.Valid(u.Delta.State) {
				t.Fatal("invalid state")
			}
		}
	})
}

// FuzzLiveBall: any bytes posted as the next ball of a live match never panic; a refusal
// is one of the API's kinds and changes nothing; an accepted ball leaves a journal that
// rebuilds the same state.
func FuzzLiveBall(f *testing.F) {
	data := matchData(f, "1298150")
	start, _, balls := liveFeed(f, data)
	for _, b := range balls[:3] {
		raw, _ := json.Marshal(b)
		f.Add(raw)
	}
	raw, _ := json.Marshal(balls[20])
	f.Add(raw)
	f.Add([]byte(`{"innings":1,"team":"Pakistan","over":0,"ball":2,"delivery":{"batter":"Babar Azam","non_striker":"Mohammad Rizwan","bowler":"B Kumar","runs":{"batter":-1,"extras":0,"total":-1}}}`))
	f.Add([]byte(`{"innings":2,"team":"India","over":0,"ball":1,"target":{"runs":5,"overs":1.7},"delivery":{"batter":"a","non_striker":"b","bowler":"c","runs":{"batter":0,"extras":0,"total":0}}}`))
	f.Fuzz(func(t *testing.T, post []byte) {
		l := liveAfter(t, start, balls[:12])
		before := l.State().Marshal()
		p, err := DecodeBall(post)
		if err == nil {
			_, _, _, _, err = l.Ball(p, 99)
		}
		if err != nil {
			if !errors.Is(err, ErrBadBall) && !errors.Is(err, ErrImpossible) && !errors.Is(err, ErrOutOfOrder) {
				t.Fatalf("refusal of another kind: %v", err)
			}
			if string(l.State().Marshal()) != string(before) {
				t.Fatalf("a refused ball changed the state: %v", err)
			}
			return
		}
		r, err := NewLiveFromJournal("m1", l.Journal())
		if err != nil {
			t.Fatalf("the journal does not rebuild: %v", err)
		}
		if a, b := canonOf(t, r.State().Marshal()), canonOf(t, l.State().Marshal()); string(a) != string(b) {
			t.Fatalf("rebuilt\n%s\n!= live\n%s", a, b)
		}
	})
}

func canonOf(t testing.TB, b []byte) []byte {
	c, err := canonJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
