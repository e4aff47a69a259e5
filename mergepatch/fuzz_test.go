package mergepatch

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzCompose: any document and any three patches. Compose refuses exactly what is not
// JSON, writes JSON, says exact exactly when the run is expressible, and then its patch
// takes every intermediate state of every tail of the run to the run's last state.
func FuzzCompose(f *testing.F) {
	f.Add([]byte(`{"score":{"runs":1,"wickets":0},"over":"0.1"}`), []byte(`{"score":{"runs":5},"over":"0.2"}`),
		[]byte(`{"score":{"wickets":1},"striker":null}`), []byte(`{"striker":{"name":"A"},"over":"0.3"}`))
	f.Add([]byte(`{"a":{"b":1}}`), []byte(`{"a":null}`), []byte(`{"a":{"c":2}}`), []byte(`{}`))
	f.Add([]byte(`[1]`), []byte(`{"\u0061":1,"a":{"x":null}}`), []byte(` [ ] `), []byte(`{"a":[{"b":null}]}`))
	f.Fuzz(func(t *testing.T, doc, p1, p2, p3 []byte) {
		run := [][]byte{p1, p2, p3}
		valid := json.Valid(p1) && json.Valid(p2) && json.Valid(p3)
		var c Composer
		out, exact, err := c.Compose(nil, run)
		if (err == nil) != valid {
			t.Fatalf("valid JSON %v, but Compose: %v", valid, err)
		}
		if err != nil {
			return
		}
		if exact && !json.Valid(out) {
			t.Fatalf("composed %q is not JSON", out)
		}
		if !exact && len(out) != 0 {
			t.Fatalf("not exact, yet wrote %q", out)
		}
		decoded := make([]any, len(run))
		for i, p := range run {
			if json.Unmarshal(p, &decoded[i]) != nil {
				return // deeper than encoding/json decodes (it validates deeper than it decodes)
			}
		}
		if want := expressible(decoded); exact != want {
			t.Fatalf("exact %v, expressible %v", exact, want)
		}
		if obj, ok := decoded[0].(map[string]any); ok {
			v, found, err := c.Member(p1, "a")
			want, has := obj["a"]
			if err != nil || found != has {
				t.Fatalf("Member: found %v, %v; decoded has %v", found, err, has)
			}
			if found {
				var got any
				if json.Unmarshal(v, &got) != nil || !reflect.DeepEqual(got, want) {
					t.Fatalf("Member %q, decoded %v", v, want)
				}
			}
		}
		var d any
		if json.Unmarshal(doc, &d) != nil {
			return
		}
		states := []any{d}
		for _, p := range decoded {
			states = append(states, apply(states[len(states)-1], p))
		}
		final := states[len(run)]
		for from := 0; from < len(run); from++ {
			tail, exact, err := c.Compose(nil, run[from:])
			if err != nil {
				t.Fatalf("the tail from %d: %v", from, err)
			}
			if !exact {
				continue
			}
			var composed any
			if err := json.Unmarshal(tail, &composed); err != nil {
				t.Fatalf("composed tail %q: %v", tail, err)
			}
			for k := from; k < len(run); k++ {
				if got := apply(states[k], composed); !reflect.DeepEqual(got, final) {
					t.Fatalf("from %d, state %d: %v, want %v (composed %s)", from, k, got, final, tail)
				}
			}
		}
	})
}
