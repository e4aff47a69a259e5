package bus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

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
// a JSON object, within MaxMessageBytes, forwarded verbatim; valid UTF-8 (a browser
// closes the connection on a text frame that is not); a delta with a valid epoch under
// its exact key and no `from`, an event with a non-empty string kind.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":1,"prio":"high","ts":1764322000123456,"patch":{"score":{"runs":1}}}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":42,"prio":"normal","ts":1,"patch":{}}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"commentary","text":"FOUR!"}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"viewers","viewers":3}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"commentary","seq":3}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"text":"no kind"}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"kind":""}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"kind":7}`,
		`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"a","Kind":"b"}`,
		`{"type":"delta","match":"m1","seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":null,"seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":"","seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":"k3 x","seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","Epoch":"k3x9","seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":5,"from":2,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":5,"From":2,"prio":"high","ts":1,"patch":{}}`,
		"{\"type\":\"delta\",\"match\":\"m1\",\"epoch\":\"k3x9\",\"seq\":1,\"prio\":\"high\",\"ts\":1,\"patch\":{\"x\":\"\xff\"}}",
		"{\"type\":\"event\",\"match\":\"m1\",\"prio\":\"low\",\"ts\":1,\"kind\":\"commentary\",\"text\":\"\xed\xa0\x80\"}",
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":1,"prio":"high","ts":1,"patch":{"x":"\ud800"}}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":0,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":-1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":1.5,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":1,"prio":"low","ts":1,"patch":{}}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":1,"prio":"high","ts":1,"patch":[1]}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":1,"prio":"high","patch":{}}`,
		`{"type":"delta","match":"bad id","epoch":"k3x9","seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"a","Match":"b","epoch":"k3x9","seq":1,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"delta","match":"a","epoch":"k3x9","seq":1,"SEQ":9,"prio":"high","ts":1,"patch":{}}`,
		`{"type":"hello","node":"x","heartbeat_s":20}`,
		`{"type":"delta","match":"m1","epoch":"k3x9","seq":1,"prio":"high","ts":1,"patch":{}} trailing`,
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
		if !utf8.Valid(data) {
			t.Fatalf("accepted invalid UTF-8: %q", data)
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
			if !bus.ValidEpoch(str("epoch")) || str("epoch") != m.Epoch {
				t.Fatalf("delta epoch %q, clients read %v: %s", m.Epoch, v["epoch"], data)
			}
			if _, has := v["from"]; has {
				t.Fatalf("delta with a from for clients: %s", data)
			}
		case bus.KindEvent:
			if str("type") != "event" || m.Seq != 0 || m.Prio != bus.PrioLow {
				t.Fatalf("event %+v: %s", m, data)
			}
			if _, has := v["seq"]; has {
				t.Fatalf("event with a seq for clients: %s", data)
			}
			if str("kind") == "" {
				t.Fatalf("event without a kind for clients: %s", data)
			}
		default:
			t.Fatalf("kind %d", m.Kind)
		}
	})
}

// TestParseRefusesWhatClientsCannotTake: the messages a version 2 client must never get
// (PROTOCOL.md "Publishing (Redis)": a message that is not a delta or event frame is
// counted and dropped) are refused, each for its reason; the same frames made right
// are accepted.
func TestParseRefusesWhatClientsCannotTake(t *testing.T) {
	for _, tc := range []struct{ why, bad, good, reason string }{
		{"a delta without epoch",
			`{"type":"delta","match":"m1","seq":1,"prio":"high","ts":1,"patch":{}}`,
			`{"type":"delta","match":"m1","epoch":"e1","seq":1,"prio":"high","ts":1,"patch":{}}`, "epoch"},
		{"a delta with epoch null",
			`{"type":"delta","match":"m1","epoch":null,"seq":1,"prio":"high","ts":1,"patch":{}}`,
			`{"type":"delta","match":"m1","epoch":"e1","seq":1,"prio":"high","ts":1,"patch":{}}`, "epoch"},
		{"a delta with an epoch of 33 characters",
			`{"type":"delta","match":"m1","epoch":"` + strings.Repeat("e", 33) + `","seq":1,"prio":"high","ts":1,"patch":{}}`,
			`{"type":"delta","match":"m1","epoch":"` + strings.Repeat("e", 32) + `","seq":1,"prio":"high","ts":1,"patch":{}}`, "epoch"},
		{"a delta carrying from",
			`{"type":"delta","match":"m1","epoch":"e1","seq":5,"from":2,"prio":"high","ts":1,"patch":{}}`,
			`{"type":"delta","match":"m1","epoch":"e1","seq":5,"prio":"high","ts":1,"patch":{}}`, "from"},
		{"a delta carrying from null",
			`{"type":"delta","match":"m1","epoch":"e1","seq":5,"from":null,"prio":"high","ts":1,"patch":{}}`,
			`{"type":"delta","match":"m1","epoch":"e1","seq":5,"prio":"high","ts":1,"patch":{}}`, "from"},
		{"an event without kind",
			`{"type":"event","match":"m1","prio":"low","ts":1,"text":"FOUR"}`,
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"commentary","text":"FOUR"}`, "kind"},
		{"an event with an empty kind",
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":""}`,
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"drs"}`, "kind"},
		{"an event with a kind that is no string",
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":["commentary"]}`,
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"commentary"}`, "kind"},
		{"an event carrying an epoch",
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"note","epoch":"e1"}`,
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"note"}`, "epoch"},
		{"an event carrying a patch",
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"note","patch":{"a":1}}`,
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"note","a":1}`, "patch"},
		{"an event carrying from",
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"note","from":3}`,
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"note"}`, "from"},
		{"a delta with invalid UTF-8 in a string",
			"{\"type\":\"delta\",\"match\":\"m1\",\"epoch\":\"e1\",\"seq\":1,\"prio\":\"high\",\"ts\":1,\"patch\":{\"last\":\"Kohli \xff\"}}",
			`{"type":"delta","match":"m1","epoch":"e1","seq":1,"prio":"high","ts":1,"patch":{"last":"Kohli ✓"}}`, "UTF-8"},
		{"an event with an encoded surrogate (not UTF-8)",
			"{\"type\":\"event\",\"match\":\"m1\",\"prio\":\"low\",\"ts\":1,\"kind\":\"commentary\",\"text\":\"\xed\xa0\x80\"}",
			`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"commentary","text":"\ud800"}`, "UTF-8"},
	} {
		if _, err := bus.Parse([]byte(tc.bad)); !errors.Is(err, bus.ErrInvalidMessage) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: Parse: %v, want refused for its %s", tc.why, err, tc.reason)
		}
		if _, err := bus.Parse([]byte(tc.good)); err != nil {
			t.Errorf("%s, made right: Parse: %v", tc.why, err)
		}
	}
}

func jsonUint(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func BenchmarkParse(b *testing.B) {
	data := []byte(`{"type":"delta","match":"m1298150","epoch":"k3x9Qw2LmZ7a","seq":142,"prio":"normal","ts":1764322000123456,"patch":{"innings":[{"team":"India","runs":187,"wickets":4,"overs":"14.3","batters":[{"name":"V Kohli","runs":72,"balls":48}]}],"last":"14.3 Starc to Kohli, FOUR"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bus.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
