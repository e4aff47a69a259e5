package publish_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"crease/bus"
	"crease/client"
	"crease/ingest"
	"crease/publish"
)

// recorder is an embedded bus that counts what is published through it.
type recorder struct {
	*bus.Embedded
	deltas, events int
}

func (r *recorder) PublishDelta(ctx context.Context, d bus.Delta) error {
	err := r.Embedded.PublishDelta(ctx, d)
	if err == nil {
		r.deltas++
	}
	return err
}

func (r *recorder) PublishEvent(ctx context.Context, m string, f []byte) error {
	err := r.Embedded.PublishEvent(ctx, m, f)
	if err == nil {
		r.events++
	}
	return err
}

func TestNewRefusesBadOptions(t *testing.T) {
	b := bus.NewEmbedded()
	for _, c := range []struct {
		o    publish.Options
		want error
	}{
		{publish.Options{Keys: []string{"k"}}, publish.ErrNoBus},
		{publish.Options{Bus: b}, publish.ErrNoKeys},
		{publish.Options{Bus: b, Keys: []string{""}}, publish.ErrNoKeys},
		{publish.Options{Bus: b, Keys: []string{"k"}, MaxBodyBytes: -1}, publish.ErrBadOpt},
	} {
		if _, err := publish.New(c.o); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.o, err, c.want)
		}
	}
}

// Every endpoint, and every refusal: each refused request publishes nothing.
func TestEndpointsAndRefusals(t *testing.T) {
	t.Parallel()
	rec := &recorder{Embedded: bus.NewEmbedded()}
	a := startAPI(t, rec, func(o *publish.Options) { o.MaxBodyBytes = 4 << 10 })
	f := realFeed(t, "1298150")
	const m = "m1"
	path := "/v1/matches/" + m
	published := func() int { return rec.deltas }
	refused := func(what string, code int, want string, method, p string, body any, hdr ...string) {
		t.Helper()
		before, evs := published(), rec.events
		r := a.do(method, p, body, hdr...)
		if r.code != code || !strings.Contains(r.problem.Detail+" "+r.problem.Code, want) {
			t.Errorf("%s: %s, want %d with %q", what, r, code, want)
		}
		if published() != before || rec.events != evs {
			t.Errorf("%s: a refused request published", what)
		}
	}

	// Auth: no key, a bad key, another scheme.
	refused("no key", 401, "unauthorized", "PUT", path, f.start, "Authorization", "")
	refused("bad key", 401, "unauthorized", "PUT", path, f.start, "Authorization", "Bearer k-tes")
	refused("basic", 401, "unauthorized", "PUT", path, f.start, "Authorization", "Basic "+key)
	if r := a.do("PUT", path, f.start, "Authorization", ""); r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	refused("bad id", 400, "bad_match_id", "PUT", "/v1/matches/a.b", f.start)
	refused("unknown endpoint", 404, "not_found", "POST", path+"/wickets", "{}")
	refused("ball before the match", 404, "unknown_match", "POST", path+"/deliveries", f.balls[0])
	refused("info not JSON", 400, "bad_request", "PUT", path, "{")
	refused("info with one team", 400, "impossible", "PUT", path, `{"teams":["A"]}`)
	refused("info with an unknown field", 400, "bad_request", "PUT", path, `{"teams":["A","B"],"colour":"red"}`)
	refused("200-over T20", 400, "more than a T20", "PUT", path, `{"teams":["A","B"],"match_type":"T20","overs":200}`)
	refused("too large", 413, "too_large", "PUT", path, `{"teams":["A","B"],"venue":"`+strings.Repeat("x", 5000)+`"}`)

	// PUT creates (201), then updates (200).
	r := a.do("PUT", path, f.start).must(t, 201)
	if r.pos.Match != m || r.pos.Seq != 1 || !bus.ValidEpoch(r.pos.Epoch) {
		t.Fatalf("created: %s", r)
	}
	epoch := r.pos.Epoch
	if r := a.do("PUT", path, f.start).must(t, 200); r.pos.Seq != 1 {
		t.Fatalf("the same info again publishes nothing: %s", r)
	}

	// Balls: the first ten, then refusals at the next position.
	for i, b := range f.balls[:10] {
		r := a.do("POST", path+"/deliveries", b).must(t, 200)
		if r.pos.Seq != uint64(i+2) || r.pos.Result != "applied" || r.pos.Epoch != epoch {
			t.Fatalf("ball %d: %s", i, r)
		}
	}
	next := f.balls[10]
	at := func(pos ingest.BallPos, delivery string) map[string]any {
		return map[string]any{"innings": pos.Innings, "over": pos.Over, "ball": pos.Ball, "team": next.Team, "delivery": json.RawMessage(delivery)}
	}
	d := func(bat, ns, bowl string, runs int, more string) string {
		return fmt.Sprintf(`{"batter":%q,"non_striker":%q,"bowler":%q,"runs":{"batter":%d,"extras":0,"total":%d}%s}`, bat, ns, bowl, runs, runs, more)
	}
	var nd struct{ Batter, Bowler, NonStriker string }
	_ = json.Unmarshal(next.Delivery, &struct {
		Batter     *string `json:"batter"`
		Bowler     *string `json:"bowler"`
		NonStriker *string `json:"non_striker"`
	}{&nd.Batter, &nd.Bowler, &nd.NonStriker})
	ok := func(more string) string { return d(nd.Batter, nd.NonStriker, nd.Bowler, 1, more) }
	skip := next.BallPos
	skip.Ball += 2
	refused("skipped position", 409, "skips a position", "POST", path+"/deliveries", at(skip, ok("")))
	refused("negative runs", 400, "negative", "POST", path+"/deliveries", at(next.BallPos, d(nd.Batter, nd.NonStriker, nd.Bowler, -1, "")))
	refused("unknown delivery field", 400, "bad_request", "POST", path+"/deliveries", at(next.BallPos, ok(`,"speed":140`)))
	refused("unknown ball field", 400, "bad_request", "POST", path+"/deliveries", `{"innings":1,"over":0,"ball":1,"team":"India","delivery":{},"x":1}`)
	refused("ball 0", 400, "out of range", "POST", path+"/deliveries", at(ingest.BallPos{Innings: 1, Over: 1, Ball: 0}, ok("")))
	refused("not a team", 400, "not one of the teams", "POST", path+"/deliveries", map[string]any{"innings": 1, "over": next.Over, "ball": next.Ball, "team": "Nepal", "delivery": json.RawMessage(ok(""))})
	refused("the other team in this innings", 400, "impossible", "POST", path+"/deliveries", map[string]any{"innings": 1, "over": next.Over, "ball": next.Ball, "team": "India", "delivery": json.RawMessage(ok(""))})
	refused("bad prio", 400, "bad_prio", "POST", path+"/deliveries?prio=urgent", at(next.BallPos, ok("")))
	refused("If-Match stale", 412, "precondition_failed", "POST", path+"/deliveries", at(next.BallPos, ok("")), "If-Match", `"`+epoch+`.3"`)
	refused("If-Match other epoch", 412, "precondition_failed", "POST", path+"/deliveries", at(next.BallPos, ok("")), "If-Match", `"zz.11"`)
	refused("state of a cricket match", 409, "cricket", "PUT", path+"/state", `{"x":1}`)
	refused("event with a reserved field", 400, "set by the API", "POST", path+"/events", `{"kind":"note","seq":1,"ts":5}`)
	refused("event without kind", 400, "kind", "POST", path+"/events", `{"text":"hi"}`)
	// Invalid UTF-8 would reach browsers verbatim, which close the connection on it.
	refused("event not UTF-8", 400, "UTF-8", "POST", path+"/events", "{\"kind\":\"note\",\"text\":\"\xff\"}")

	// A matching If-Match is accepted.
	r = a.do("POST", path+"/deliveries", next, "If-Match", fmt.Sprintf(`"%s.%d"`, epoch, 11)).must(t, 200)
	if r.pos.Seq != 12 {
		t.Fatalf("ball with If-Match: %s", r)
	}

	// A retried ball publishes nothing and answers the seq it got.
	before := published()
	if r := a.do("POST", path+"/deliveries", f.balls[3]).must(t, 200); r.pos.Seq != 5 || r.pos.Result != "duplicate" {
		t.Fatalf("duplicate: %s", r)
	}
	if published() != before {
		t.Fatal("a duplicate published")
	}
	// Idempotency-Key: a retried request publishes once, a reused key for another one is 422.
	ev := `{"kind":"note","text":"rain delay"}`
	r1 := a.do("POST", path+"/events", ev, "Idempotency-Key", "ev-1").must(t, 200)
	evs := rec.events
	r2 := a.do("POST", path+"/events", ev, "Idempotency-Key", "ev-1").must(t, 200)
	if rec.events != evs || string(r1.body) != string(r2.body) || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("idempotent retry published again: %d events, %s / %s", rec.events-evs, r1, r2)
	}
	refused("Idempotency-Key reused", 422, "idempotency_key_reused", "POST", path+"/events", `{"kind":"note","text":"other"}`, "Idempotency-Key", "ev-1")

	// A correction: ball 4 becomes a six; published as one normal delta.
	var ball4 map[string]any
	raw, _ := json.Marshal(f.balls[3])
	_ = json.Unmarshal(raw, &ball4)
	dl := ball4["delivery"].(map[string]any)
	dl["runs"] = map[string]any{"batter": 6, "extras": 0, "total": 6}
	delete(dl, "extras")
	delete(dl, "wickets")
	r = a.do("POST", path+"/deliveries", ball4).must(t, 200)
	if r.pos.Result != "correction" || r.pos.Seq != 13 {
		t.Fatalf("correction: %s", r)
	}
	// The generic state endpoints, on another match.
	sp := "/v1/matches/g1/state"
	refused("state not an object", 400, "bad_state", "PUT", sp, `[1]`)
	refused("PATCH without merge-patch type", 415, "bad_content_type", "PATCH", sp, `{"a":1}`)
	if r := a.do("PUT", sp, `{"title":"Open Final","set":1,"games":{"a":0}}`).must(t, 200); r.pos.Seq != 1 {
		t.Fatalf("state: %s", r)
	}
	if r := a.do("PUT", sp, `{"games":{"a":0},"set":1,"title":"Open Final"}`).must(t, 200); r.pos.Seq != 1 {
		t.Fatalf("an equal state publishes nothing: %s", r)
	}
	if r := a.do("PATCH", sp, `{"games":{"a":1}}`, "Content-Type", "application/merge-patch+json").must(t, 200); r.pos.Seq != 2 {
		t.Fatalf("patch: %s", r)
	}
	refused("patch not UTF-8", 400, "UTF-8", "PATCH", sp, "{\"games\":{\"b\":\"\xff\"}}", "Content-Type", "application/merge-patch+json")
	refused("ball on a state match", 409, "not_cricket", "POST", "/v1/matches/g1/deliveries", f.balls[0])
	refused("info on a state match", 409, "not_cricket", "PUT", "/v1/matches/g1", f.start)
	st := stored(t, rec, "g1")
	if eq, _ := client.JSONEqual(st.State, []byte(`{"games":{"a":1},"set":1,"title":"Open Final"}`)); !eq {
		t.Fatalf("stored state %s", st.State)
	}
	msgs, ok2, err := rec.History(context.Background(), "g1", st.Epoch, 1)
	if err != nil || !ok2 || len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), `"patch":{"games":{"a":1}}`) || !strings.Contains(string(msgs[0].Data), `"prio":"normal"`) {
		t.Fatalf("history %v %v %v", msgs, ok2, err)
	}
	ms, _ := rec.Matches(context.Background())
	if len(ms) != 2 || ms[0].Title != "Open Final" || ms[1].Title != "Pakistan v India" {
		t.Fatalf("matches %+v", ms)
	}
}

// The plausibility refusals of the issue, through the API.
func TestImpossibleBallsAre400(t *testing.T) {
	t.Parallel()
	a := startAPI(t, bus.NewEmbedded(), nil)
	info := `{"teams":["A","B"],"match_type":"T20","overs":2,"balls_per_over":6}`
	ball := func(inn int, team string, over, b int, d string) map[string]any {
		return map[string]any{"innings": inn, "team": team, "over": over, "ball": b, "delivery": json.RawMessage(d)}
	}
	dot := func(bat, ns, bowl string, more string) string {
		return fmt.Sprintf(`{"batter":%q,"non_striker":%q,"bowler":%q,"runs":{"batter":0,"extras":0,"total":0}%s}`, bat, ns, bowl, more)
	}
	wicket := func(bat, ns string) string {
		return dot(bat, ns, "b1", fmt.Sprintf(`,"wickets":[{"player_out":%q,"kind":"bowled"}]`, bat))
	}
	t.Run("eleventh wicket", func(t *testing.T) {
		a.do("PUT", "/v1/matches/w11", info).must(t, 201)
		n := 0
		for i := 1; i <= 10; i++ {
			over, b := n/6, n%6+1
			a.do("POST", "/v1/matches/w11/deliveries", ball(1, "A", over, b, wicket(fmt.Sprintf("a%d", i), "a0"))).must(t, 200)
			n++
		}
		r := a.do("POST", "/v1/matches/w11/deliveries", ball(1, "A", 1, 5, wicket("a11", "a0")))
		if r.code != 400 || !strings.Contains(r.problem.Detail, "all out") {
			t.Fatalf("%s", r)
		}
	})
	t.Run("past the overs, batter out again, chase past target", func(t *testing.T) {
		p := "/v1/matches/ov/deliveries"
		a.do("PUT", "/v1/matches/ov", info).must(t, 201)
		for n := 0; n < 12; n++ {
			a.do("POST", p, ball(1, "A", n/6, n%6+1, dot("a1", "a2", "b1", ""))).must(t, 200)
		}
		if r := a.do("POST", p, ball(1, "A", 1, 7, dot("a1", "a2", "b1", ""))); r.code != 400 || !strings.Contains(r.problem.Detail, "overs were bowled") {
			t.Fatalf("past the overs: %s", r)
		}
		if r := a.do("POST", p, ball(1, "A", 2, 1, dot("a1", "a2", "b1", ""))); r.code != 400 || !strings.Contains(r.problem.Detail, "past the innings") {
			t.Fatalf("over 2 of a 2-over innings: %s", r)
		}
		// Innings 2: B need 1. A wicket, then the dismissed batter again, then the win,
		// then a ball after the target.
		a.do("POST", p, ball(2, "B", 0, 1, wicket("b1", "b2"))).must(t, 200)
		if r := a.do("POST", p, ball(2, "B", 0, 2, dot("b1", "b2", "a1", ""))); r.code != 400 || !strings.Contains(r.problem.Detail, "bats again") {
			t.Fatalf("out batter again: %s", r)
		}
		win := `{"batter":"b3","non_striker":"b2","bowler":"a1","runs":{"batter":4,"extras":0,"total":4}}`
		a.do("POST", p, ball(2, "B", 0, 2, win)).must(t, 200)
		if r := a.do("POST", p, ball(2, "B", 0, 3, dot("b3", "b2", "a1", ""))); r.code != 400 || !strings.Contains(r.problem.Detail, "target") {
			t.Fatalf("past the target: %s", r)
		}
	})
}

func TestPutMatchFinishesWithOutcome(t *testing.T) {
	t.Parallel()
	b := bus.NewEmbedded()
	a := startAPI(t, b, nil)
	f := realFeed(t, "335982")
	a.do("PUT", "/v1/matches/ipl", f.start).must(t, 201)
	for _, bl := range f.balls {
		a.do("POST", "/v1/matches/ipl/deliveries", bl).must(t, 200)
	}
	r := a.do("PUT", "/v1/matches/ipl", f.end).must(t, 200)
	st := stored(t, b, "ipl")
	if st.Seq != r.pos.Seq || st.Seq != uint64(len(f.balls)+2) {
		t.Fatalf("seq %d, answer %s, %d balls", st.Seq, r, len(f.balls))
	}
	final := f.m.Final()
	want, _ := json.Marshal(final)
	var got, exp any
	_ = json.Unmarshal(st.State, &got)
	_ = json.Unmarshal(want, &exp)
	gj, _ := json.Marshal(got)
	ej, _ := json.Marshal(exp)
	// The file's final state names the match by the file's id.
	if strings.Replace(string(gj), `"match":"ipl"`, `"match":"335982"`, 1) != string(ej) {
		t.Fatalf("posted ball by ball\n%s\n!= the file\n%s", gj, ej)
	}
	if r := a.do("POST", "/v1/matches/ipl/deliveries", f.balls[len(f.balls)-1]).must(t, 200); r.pos.Result != "duplicate" {
		t.Fatalf("a retried last ball after the result: %s", r)
	}
	_ = http.StatusOK
}

// A match that a file replay publishes is not the API's to write.
func TestReplayedMatchIsRefused(t *testing.T) {
	t.Parallel()
	b := bus.NewEmbedded()
	ms, err := ingest.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if err := ingest.Replay(context.Background(), b, ms[0], ingest.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	a := startAPI(t, b, nil)
	f := realFeed(t, ms[0].ID())
	for _, c := range []struct {
		method, path string
		body         any
	}{{"PUT", "/v1/matches/" + ms[0].ID(), f.start}, {"POST", "/v1/matches/" + ms[0].ID() + "/deliveries", f.balls[0]}, {"PUT", "/v1/matches/" + ms[0].ID() + "/state", `{"a":1}`}} {
		if r := a.do(c.method, c.path, c.body); r.code != 409 || r.problem.Code != "replayed" {
			t.Errorf("%s %s: %s", c.method, c.path, r)
		}
	}
}

// Requests for matches that do not exist keep no memory.
func TestUnknownMatchesAreForgotten(t *testing.T) {
	t.Parallel()
	a := startAPI(t, bus.NewEmbedded(), nil)
	for i := range 50 {
		a.do("POST", fmt.Sprintf("/v1/matches/nope%d/deliveries", i), `{}`).must(t, 400)
		a.do("PUT", fmt.Sprintf("/v1/matches/bad%d", i), `{"teams":["A"]}`).must(t, 400)
	}
	a.do("PUT", "/v1/matches/real", `{"teams":["A","B"]}`).must(t, 201)
	if n := a.api.Matches(); n != 1 {
		t.Fatalf("%d matches held after refusals of unknown ones", n)
	}
}

// The audit's impossible input, through the API: 400 impossible, and nothing changes.
func TestAuditedImpossibleInputIs400(t *testing.T) {
	t.Parallel()
	b := bus.NewEmbedded()
	a := startAPI(t, b, nil)
	info := `{"teams":["Lions","Tigers"],"match_type":"T20","overs":2}`
	ball := func(inn int, team string, over, b int, d string) map[string]any {
		return map[string]any{"innings": inn, "team": team, "over": over, "ball": b, "delivery": json.RawMessage(d)}
	}
	run := func(bat, ns, bowl string, r int, more string) string {
		return fmt.Sprintf(`{"batter":%q,"non_striker":%q,"bowler":%q,"runs":{"batter":%d,"extras":0,"total":%d}%s}`, bat, ns, bowl, r, r, more)
	}
	refused := func(what string, r reply, want string) {
		t.Helper()
		if r.code != 400 || r.problem.Code != "impossible" || !strings.Contains(r.problem.Detail, want) {
			t.Errorf("%s: %s, want 400 impossible with %q", what, r, want)
		}
	}
	p := "/v1/matches/au/deliveries"
	a.do("PUT", "/v1/matches/au", info).must(t, 201)
	for b := 1; b <= 7; b++ {
		a.do("POST", p, ball(1, "Lions", 0, b, run("l1", "l2", "t1", 1, ""))).must(t, 200)
	}
	refused("legal ball 8 of an over", a.do("POST", p, ball(1, "Lions", 0, 8, run("l1", "l2", "t1", 1, ""))), "legal ball 8 of over 0")
	refused("two run outs", a.do("POST", p, ball(1, "Lions", 1, 1, run("l1", "l2", "t1", 1, `,"wickets":[{"kind":"run out","player_out":"l1"},{"kind":"run out","player_out":"l2"}]`))), "two dismissals in play")
	refused("9 off the bat", a.do("POST", p, ball(1, "Lions", 1, 1, run("l1", "l2", "t1", 9, ""))), "runs.batter 9 is more than 8")
	r := a.do("PUT", "/v1/matches/au", `{"teams":["Lions","Tigers"],"match_type":"T20","overs":2,"outcome":{"winner":"Tigers","by":{"wickets":10}}}`)
	refused("Tigers by 10 wickets, never batted", r, "Lions batted last")
	a.do("POST", p, ball(2, "Tigers", 0, 1, run("t1", "t2", "l1", 8, ""))).must(t, 200) // the target of 8
	refused("a third innings after the chase", a.do("POST", p, ball(3, "Lions", 0, 1, run("l1", "l2", "t1", 0, ""))), "the match was won")
	a.do("PUT", "/v1/matches/au", `{"teams":["Lions","Tigers"],"match_type":"T20","overs":2,"outcome":{"winner":"Tigers","by":{"wickets":10}}}`).must(t, 200)
	refused("an info without the outcome", a.do("PUT", "/v1/matches/au", info), "the match has its result")
	var st struct{ Status, Over string }
	if err := json.Unmarshal(stored(t, b, "au").State, &st); err != nil || st.Status != "finished" || st.Over != "0.1" {
		t.Fatalf("stored state %+v (%v), want finished at the end of innings 2 (0.1)", st, err)
	}
}
