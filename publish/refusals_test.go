package publish_test

import (
	"strings"
	"testing"

	"crease/bus"
	"crease/client"
	"crease/publish"
)

// A write the scorer takes but the store does not (a delta over the bus limit) leaves
// no trace: the next good write publishes only itself, and the refused one can be sent
// again, corrected, as new.
func TestRefusedWriteLeavesNoTrace(t *testing.T) {
	t.Parallel()
	rec := &recorder{Embedded: bus.NewEmbedded()}
	a := startAPI(t, rec, nil)
	f := realFeed(t, "1298150")
	const path = "/v1/matches/trace"
	a.do("PUT", path, f.start).must(t, 201)
	for _, b := range f.balls[:3] {
		a.do("POST", path+"/deliveries", b).must(t, 200)
	}
	before := stored(t, rec, "trace")

	// An info update whose delta is over the bus limit: 413, and nothing changes.
	huge := strings.Replace(string(f.start), `{`, `{"venue":"`+strings.Repeat("v", bus.MaxMessageBytes)+`",`, 1)
	if strings.Count(huge, `"venue"`) == 2 { // the real info has a venue: replace it instead
		huge = string(f.start)
		i := strings.Index(huge, `"venue":"`) + len(`"venue":"`)
		huge = huge[:i] + strings.Repeat("v", bus.MaxMessageBytes) + huge[i:]
	}
	if r := a.do("PUT", path, huge); r.code != 413 || r.problem.Code != "too_large" {
		t.Fatalf("oversized info: %s", r)
	}
	// The next ball is taken as if the refused info had never come: it publishes one
	// delta of its own, and the stored state is the ball's alone.
	pub := rec.deltas
	r := a.do("POST", path+"/deliveries", f.balls[3]).must(t, 200)
	if r.pos.Seq != before.Seq+1 || r.pos.Result != "applied" || rec.deltas != pub+1 {
		t.Fatalf("the ball after a refusal: %s (%d deltas)", r, rec.deltas-pub)
	}
	after := stored(t, rec, "trace")
	if strings.Contains(string(after.State), strings.Repeat("v", 100)) {
		t.Fatal("the refused info reached the store with the next ball")
	}

	// Against a match scored without the refusal, the state is the same.
	ref := &recorder{Embedded: bus.NewEmbedded()}
	b := startAPI(t, ref, nil)
	b.do("PUT", path, f.start).must(t, 201)
	for _, ball := range f.balls[:4] {
		b.do("POST", path+"/deliveries", ball).must(t, 200)
	}
	if eq, _ := client.JSONEqual(after.State, stored(t, ref, "trace").State); !eq {
		t.Fatalf("state after a refused write:\n%s\nwant\n%s", after.State, stored(t, ref, "trace").State)
	}
}

// Bodies and methods the API cannot take are refused with a clear problem, and publish
// nothing.
func TestBadRequestsAreRefusedClearly(t *testing.T) {
	t.Parallel()
	rec := &recorder{Embedded: bus.NewEmbedded()}
	a := startAPI(t, rec, nil)
	f := realFeed(t, "1298150")
	a.do("PUT", "/v1/matches/m1", f.start).must(t, 201)
	sp := "/v1/matches/s1/state"
	pos := a.do("PUT", sp, `{"title":"S1","score":5}`).must(t, 200).pos

	for _, c := range []struct {
		what, method, path, ctype, body string
		code                            int
		want                            string // in detail or code
	}{
		{"invalid UTF-8 in a state", "PUT", sp, "", "{\"name\":\"zz\xffq\"}", 400, "not valid UTF-8 (first bad byte at offset 11)"},
		{"invalid UTF-8 in a patch", "PATCH", sp, "application/merge-patch+json", "{\"name\":\"\xc3\"}", 400, "UTF-8"},
		{"invalid UTF-8 in an event", "POST", "/v1/matches/m1/events", "", "{\"kind\":\"commentary\",\"text\":\"x\xffy\"}", 400, "UTF-8"},
		{"broken JSON state", "PUT", sp, "", `{"title":"S1","score":5,}`, 400, "invalid JSON at byte"},
		{"empty state", "PUT", sp, "", ``, 400, "the body is empty"},
		{"state null", "PUT", sp, "", `null`, 400, "got null"},
		{"state an array", "PUT", sp, "", `[1]`, 400, "got a JSON array"},
		{"patch a number", "PATCH", sp, "application/merge-patch+json", `5`, 400, "got a JSON number"},
		{"event on no match", "POST", "/v1/matches/nowhere/events", "", `{"kind":"commentary","text":"hi"}`, 404, "unknown_match"},
		{"viewers not a number", "POST", "/v1/matches/m1/events", "", `{"kind":"viewers","viewers":"lots"}`, 400, "whole number"},
		{"viewers negative", "POST", "/v1/matches/m1/events", "", `{"kind":"viewers","viewers":-5}`, 400, "whole number"},
		{"viewers missing", "POST", "/v1/matches/m1/events", "", `{"kind":"viewers"}`, 400, "whole number"},
		{"event with epoch", "POST", "/v1/matches/m1/events", "", `{"kind":"note","epoch":"x"}`, 400, "set by the API"},
		{"event with from", "POST", "/v1/matches/m1/events", "", `{"kind":"note","from":1}`, 400, "set by the API"},
		{"info an array", "PUT", "/v1/matches/m2", "", `[1]`, 400, "got a JSON array, want an object"},
		{"info null", "PUT", "/v1/matches/m2", "", `null`, 400, "bad_request"},
		{"info empty", "PUT", "/v1/matches/m2", "", ``, 400, "the JSON is empty"},
		{"info cut short", "PUT", "/v1/matches/m2", "", `{"teams":["A",`, 400, "cut short"},
		{"teams a string", "PUT", "/v1/matches/m2", "", `{"teams":"A v B"}`, 400, "teams: got a JSON string, want an array"},
		{"innings a string", "POST", "/v1/matches/m1/deliveries", "", `{"innings":"1","team":"India","over":0,"ball":1,"delivery":{}}`, 400, "innings: got a JSON string, want a whole number"},
		{"over a fraction", "POST", "/v1/matches/m1/deliveries", "", `{"innings":1,"team":"India","over":0.5,"ball":1,"delivery":{}}`, 400, "over: got a JSON number 0.5, want a whole number"},
		{"runs an object", "POST", "/v1/matches/m1/deliveries", "", `{"innings":1,"team":"India","over":0,"ball":1,"delivery":{"batter":"a","non_striker":"b","bowler":"c","runs":{"batter":{},"extras":0,"total":0}}}`, 400, "batter: got a JSON object, want a whole number"},
	} {
		before, evs := rec.deltas, rec.events
		hdr := []string{}
		if c.ctype != "" {
			hdr = []string{"Content-Type", c.ctype}
		}
		r := a.do(c.method, c.path, c.body, hdr...)
		if r.code != c.code || !strings.Contains(r.problem.Detail+" "+r.problem.Code, c.want) {
			t.Errorf("%s: %s, want %d with %q", c.what, r, c.code, c.want)
		}
		if strings.Contains(r.problem.Detail, "Go ") || strings.Contains(r.problem.Detail, "json:") || strings.Contains(r.problem.Detail, "ingest") {
			t.Errorf("%s: the detail speaks Go: %q", c.what, r.problem.Detail)
		}
		if rec.deltas != before || rec.events != evs {
			t.Errorf("%s: a refused request published", c.what)
		}
	}

	// Wrong methods: 405 with what the path takes; unknown paths stay 404.
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", sp, "PUT, PATCH, OPTIONS"},
		{"POST", sp, "PUT, PATCH, OPTIONS"},
		{"GET", "/v1/matches/m1/deliveries", "POST, OPTIONS"},
		{"PUT", "/v1/matches/m1/events", "POST, OPTIONS"},
		{"DELETE", "/v1/matches/m1", "PUT, OPTIONS"},
	} {
		r := a.do(c.method, c.path, nil)
		if r.code != 405 || r.header.Get("Allow") != c.allow || r.problem.Code != "method_not_allowed" {
			t.Errorf("%s %s: %s Allow %q, want 405 with Allow %q", c.method, c.path, r, r.header.Get("Allow"), c.allow)
		}
	}
	if r := a.do("POST", "/v1/matches/m1/wickets", "{}"); r.code != 404 {
		t.Errorf("unknown path: %s", r)
	}

	// PATCH with another type says what it takes; an empty patch publishes nothing.
	if r := a.do("PATCH", sp, `{"a":1}`); r.code != 415 || r.header.Get("Accept-Patch") != "application/merge-patch+json" {
		t.Errorf("PATCH as JSON: %s Accept-Patch %q", r, r.header.Get("Accept-Patch"))
	}
	before := rec.deltas
	if r := a.do("PATCH", sp, `{}`, "Content-Type", "application/merge-patch+json").must(t, 200); r.pos != pos {
		t.Errorf("empty patch answered %+v, want %+v", r.pos, pos)
	}
	if rec.deltas != before {
		t.Error("an empty merge patch published a delta")
	}

	// Events: answered with the match's position; If-Match is checked.
	r := a.do("POST", sp[:len(sp)-len("/state")]+"/events", `{"kind":"viewers","viewers":12}`).must(t, 200)
	if r.pos != pos {
		t.Errorf("event answered %+v, want the match's position %+v", r.pos, pos)
	}
	if r := a.do("POST", "/v1/matches/s1/events", `{"kind":"note"}`, "If-Match", `"nope.1"`); r.code != 412 {
		t.Errorf("event with a stale If-Match: %s", r)
	}
	a.do("POST", "/v1/matches/s1/events", `{"kind":"note"}`, "If-Match", `"`+pos.Epoch+`.1"`).must(t, 200)
}

// The gateway's OPTIONS answer names the publish API's methods with the snapshot's GET.
func TestAllowNamesEachPathsMethods(t *testing.T) {
	a, err := publish.New(publish.Options{Bus: bus.NewEmbedded(), Keys: []string{"k"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/v1/matches/m1":            "PUT, OPTIONS",
		"/v1/matches/m1/state":      "PUT, PATCH, OPTIONS",
		"/v1/matches/m1/deliveries": "POST, OPTIONS",
		"/v1/matches/m1/events":     "POST, OPTIONS",
		"/v1/matches/m.1/events":    "",
		"/v1/matches/":              "",
		"/v1/matches/m1/x":          "",
		"/metrics":                  "",
	} {
		if got := a.Allow(path); got != want {
			t.Errorf("Allow(%q) = %q, want %q", path, got, want)
		}
	}
}
