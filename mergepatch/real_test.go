package mergepatch

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"crease/ingest"
)

// realMatch is the real match 335982 (an IPL game, both innings and the result) as
// ingest reads it from its embedded file.
func realMatch(tb testing.TB) *ingest.Match {
	tb.Helper()
	data, err := ingest.EmbeddedFile("335982")
	if err != nil {
		tb.Fatal(err)
	}
	m, err := ingest.ReadMatch("335982.json", data)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestComposeRealMatch runs the composition over the deltas of a real match (an IPL
// game, both innings and the result): every run of 2 to 30 consecutive deltas that
// composes exactly takes the states inside the run (its first, a middle one and its
// last) to the state after it. It also reports how
// often real runs compose, the figure behind catch-up deltas (PROTOCOL.md).
func TestComposeRealMatch(t *testing.T) {
	st, err := ingest.NewStepper(realMatch(t), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var patches [][]byte
	states := []any{map[string]any{}}
	for !(len(patches) > 0 && patches[len(patches)-1] == nil) && len(patches) < 400 {
		u, err := st.Next(time.Unix(1e9, 0))
		if err != nil {
			t.Fatal(err)
		}
		patches = append(patches, u.Patch)
		var s any
		if err := json.Unmarshal(u.Delta.State, &s); err != nil {
			t.Fatal(err)
		}
		states = append(states, s)
		if u.Last {
			break
		}
	}
	var c Composer
	var buf []byte
	for _, w := range []int{2, 10, 30} {
		exact := 0
		for i := 0; i+w <= len(patches); i++ {
			var ok bool
			buf, ok, err = c.Compose(buf[:0], patches[i:i+w])
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				continue
			}
			exact++
			var p any
			if err := json.Unmarshal(buf, &p); err != nil {
				t.Fatal(err)
			}
			for _, k := range []int{i, i + w/2, i + w - 1} { // the run's first, a middle and its last state
				if got := apply(states[k], p); !reflect.DeepEqual(got, states[i+w]) {
					t.Fatalf("deltas %d..%d composed, applied to the state at %d: differs from the state at %d", i+1, i+w, k, i+w)
				}
			}
		}
		runs := len(patches) - w + 1
		t.Logf("runs of %2d deltas: %d of %d compose exactly (%.1f%%)", w, exact, runs, 100*float64(exact)/float64(runs))
		if exact < runs/2 {
			t.Errorf("runs of %d: only %d of %d compose: real deltas should mostly compose", w, exact, runs)
		}
	}
}

// BenchmarkComposeRealRun composes 10 consecutive deltas of a real match, the run a
// slow connection typically has queued.
func BenchmarkComposeRealRun(b *testing.B) {
	st, _ := ingest.NewStepper(realMatch(b), 0, nil)
	var run [][]byte
	in := 0
	for i := 0; i < 60; i++ {
		u, err := st.Next(time.Unix(1e9, 0))
		if err != nil {
			b.Fatal(err)
		}
		if i >= 50 {
			run = append(run, u.Patch)
			in += len(u.Patch)
		}
	}
	var c Composer
	var buf []byte
	b.SetBytes(int64(in))
	b.ReportAllocs()
	for b.Loop() {
		buf, _, _ = c.Compose(buf[:0], run)
	}
	b.ReportMetric(float64(len(buf)), "out-bytes")
}
