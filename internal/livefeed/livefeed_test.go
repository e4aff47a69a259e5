package livefeed_test

import (
	"encoding/json"
	"testing"

	"crease/ingest"
	"crease/internal/livefeed"
)

// Every body of the real matches is a ball the publish API decodes, the target rides
// on each innings' first ball only, and the info loses only its outcome.
func TestRealMatchesDecode(t *testing.T) {
	for _, name := range []string{"1298150", "1359539", "335982"} {
		data, err := ingest.EmbeddedFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := livefeed.FromFile(data)
		if err != nil {
			t.Fatal(err)
		}
		var start, end map[string]json.RawMessage
		if json.Unmarshal(f.Start, &start) != nil || json.Unmarshal(f.End, &end) != nil {
			t.Fatalf("%s: infos %s / %s", name, f.Start, f.End)
		}
		if _, ok := start["outcome"]; ok || end["outcome"] == nil || len(end) != len(start)+1 {
			t.Fatalf("%s: start has %d fields, end %d", name, len(start), len(end))
		}
		inn, targets := 0, 0
		for i, body := range f.Balls {
			b, err := ingest.DecodeBall(body)
			if err != nil {
				t.Fatalf("%s ball %d: %v: %s", name, i, err, body)
			}
			if b.Target != nil {
				targets++
				if b.Innings == inn {
					t.Fatalf("%s ball %d: a target after the innings' first ball", name, i)
				}
			}
			inn = b.Innings
		}
		if len(f.Balls) < 200 {
			t.Fatalf("%s: %d balls", name, len(f.Balls))
		}
		t.Logf("%s: %d balls, %d innings targets", name, len(f.Balls), targets)
	}
	if _, err := livefeed.FromFile([]byte(`[1]`)); err == nil {
		t.Fatal("a file that is not an object was read")
	}
}
