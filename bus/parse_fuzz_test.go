package bus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"crease/bus"
)

// jsView decodes a message the way a browser's JSON.parse sees it: exact, case-sensitive
// keys, the last of duplicates winning (encoding/json into a map does the same).
func jsView(data []byte) (map[string]any, bool) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v map[string]any
	if d.Decode(&v) != nil || v == nil {
		return nil, false
	}
	return v, true
}

// FuzzParse fuzzes bus message validation: Parse never panics, refuses with
// ErrInvalidMessage, and what it accepts is a frame that every client reads the same way
// the gateway routed it: same type, match, seq and prio under exact keys, a patch that is
// a JSON object, within MaxMessageBytes, forwarded verbatim.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"type":"delta","match":"m1","seq":1,"prio":"high","ts":1764322000123456,"patch":{"score":{"runs":1}}}`,
		`{"type":"delta","match":"m1","seq":42,"prio":"normal","ts":1,"patch":{}}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"commentary","text":"FOUR!"}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"seq":3}`,
		`{"type":"delta","match":"m1","seq":0,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","seq":-1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","seq":1.5,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","seq":1,"prio":"low","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","seq":1,"prio":"high","ts":1,"patch":[1]}`,
		`{"type":"delta","match":"m1","seq":1,"prio":"high","patch":{}}`,
		`{"type":"delta","match":"bad id","seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"a","Match":"b","seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"a","seq":1,"SEQ":9,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"hello","node":"x","heartbeat_s":20}`,
		`{"type":"delta","match":"m1","seq":1,"prio":"high","ts":1,"patch":{}} trailing`,
		`null`, `[]`, `{}`, ``, `{"type":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		m, err := bus.Parse(data)
		if !bytes.Equal(in, data) {
			t.Fatal("Parse modified its input")
		}
		if err != nil {
			if !errors.Is(err, bus.ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		if len(data) > bus.MaxMessageBytes || !bytes.Equal(m.Data, data) {
			t.Fatalf("accepted %d bytes, Data %d bytes", len(data), len(m.Data))
		}
		if !bus.ValidMatchID(m.Match) {
			t.Fatalf("accepted match %q", m.Match)
		}
		v, ok := jsView(data)
		if !ok {
			t.Fatalf("accepted %q, which is not a JSON object", data)
		}
		str := func(k string) string { s, _ := v[k].(string); return s }
		if str("match") != m.Match {
			t.Fatalf("routed as match %q, clients read match %q: %s", m.Match, v["match"], data)
		}
		if str("prio") != m.Prio.String() {
			t.Fatalf("prio %v, clients read %q: %s", m.Prio, v["prio"], data)
		}
		if _, ok := v["ts"].(json.Number); !ok {
			t.Fatalf("accepted without a numeric ts under the exact key: %s", data)
		}
		switch m.Kind {
		case bus.KindDelta:
			n, _ := v["seq"].(json.Number)
			if str("type") != "delta" || m.Seq == 0 || n.String() != jsonUint(m.Seq) {
				t.Fatalf("delta seq %d, clients read type %q seq %v: %s", m.Seq, v["type"], v["seq"], data)
			}
			if _, ok := v["patch"].(map[string]any); !ok {
				t.Fatalf("delta patch is not an object for clients: %s", data)
			}
		case bus.KindEvent:
			if str("type") != "event" || m.Seq != 0 || m.Prio != bus.PrioLow {
				t.Fatalf("event %+v: %s", m, data)
			}
			if _, has := v["seq"]; has {
				t.Fatalf("event with a seq for clients: %s", data)
			}
		default:
			t.Fatalf("kind %d", m.Kind)
		}
	})
}

func jsonUint(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func BenchmarkParse(b *testing.B) {
	data := []byte(`{"type":"delta","match":"m1298150","seq":142,"prio":"normal","ts":1764322000123456,"patch":{"innings":[{"team":"India","runs":187,"wickets":4,"overs":"14.3","batters":[{"name":"V Kohli","runs":72,"balls":48}]}],"last":"14.3 Starc to Kohli, FOUR"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bus.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
