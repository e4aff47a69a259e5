package ingest

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"crease/bus"
)

// FuzzReadMatch: ReadMatch never panics, refuses only with an *Error naming the file, and
// a match it accepts steps to its end with valid frames.
func FuzzReadMatch(f *testing.F) {
	// The real files are tested elsewhere; small seeds keep the fuzzer fast.
	data, err := os.ReadFile("matches/335982.json")
	if err != nil {
		f.Fatal(err)
	}
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
