package publish_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"crease/client"
	"crease/internal/redistest"
	"crease/publish"
	"crease/server/servertest"
)

// A real match posted ball by ball through the API into Redis, with retried POSTs and
// an umpire's correction: every client of a real gateway converges to the corrected
// state, a retry publishes once, and the end equals the match replayed from its file.
func TestBallByBallThroughRedisToClients(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	gw := startGateway(t, srv.Addr())
	pub := redisBus(t, srv.Addr())
	a := startAPI(t, pub, nil)
	f := realFeed(t, "1298150")
	id := f.m.ID()
	var ws []*watcher
	for range 4 {
		ws = append(ws, watch(t, gw, id))
	}
	p := "/v1/matches/" + id
	a.do("PUT", p, f.start).must(t, 201)
	for i, b := range f.balls {
		r := a.do("POST", p+"/deliveries", b).must(t, 200)
		if i%25 == 0 { // the provider's webhook retried: nothing more is published
			if again := a.do("POST", p+"/deliveries", b).must(t, 200); again.pos.Seq != r.pos.Seq || again.pos.Result != "duplicate" {
				t.Fatalf("retry of ball %d: %s after %s", i, again, r)
			}
		}
		if i == 100 { // an umpire's review: ball 51's runs become leg byes
			var c map[string]any
			raw, _ := json.Marshal(f.balls[50])
			_ = json.Unmarshal(raw, &c)
			d := c["delivery"].(map[string]any)
			d["runs"] = map[string]any{"batter": 0, "extras": 1, "total": 1}
			d["extras"] = map[string]any{"legbyes": 1}
			delete(d, "wickets")
			before := snapshot(t, gw, id)
			if r := a.do("POST", p+"/deliveries", c).must(t, 200); r.pos.Result != "correction" {
				t.Fatalf("correction: %s", r)
			}
			// Every client converges to the corrected state: one more leg bye.
			corrected := verify(t, gw, id, ws...)
			lb := func(s client.Snapshot) int {
				var st struct {
					Innings map[string]struct {
						Extras struct{ Legbyes int } `json:"extras"`
					} `json:"innings"`
				}
				_ = json.Unmarshal(s.State, &st)
				return st.Innings["1"].Extras.Legbyes
			}
			if corrected.Seq != before.Seq+1 || lb(corrected) != lb(before)+1 {
				t.Fatalf("corrected at seq %d (before %d), leg byes %d (before %d)", corrected.Seq, before.Seq, lb(corrected), lb(before))
			}
			// Putting the original back is a correction too; the file's end stays exact.
			if r := a.do("POST", p+"/deliveries", f.balls[50]).must(t, 200); r.pos.Result != "correction" {
				t.Fatalf("correction back: %s", r)
			}
		}
	}
	a.do("PUT", p, f.end).must(t, 200)
	final := verify(t, gw, id, ws...)
	if want := uint64(len(f.balls) + 2 + 2); final.Seq != want {
		t.Fatalf("final seq %d, want %d (info, balls, two corrections, result)", final.Seq, want)
	}
	want, _ := json.Marshal(f.m.Final())
	if eq, err := client.JSONEqual(final.State, want); err != nil || !eq {
		t.Fatalf("final state through the API\n%s\n!= the file's\n%s", final.State, want)
	}
	// Listed, with its epoch.
	resp, err := http.Get(gw.http() + "/v1/matches")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct{ Match, Title, Epoch string }
	_ = json.NewDecoder(resp.Body).Decode(&rows)
	resp.Body.Close()
	if len(rows) != 1 || rows[0].Match != id || rows[0].Epoch != final.Epoch || rows[0].Title != "Pakistan v India" {
		t.Fatalf("listed %+v", rows)
	}
}

// While Redis is unreachable a write is 503 with Retry-After and publishes nothing;
// Redis comes back empty (no persistence): the API still holds the match and re-seeds
// it at its own next seq, same epoch; clients converge.
func TestRedisDownIs503ThenReseeded(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	gw := startGateway(t, srv.Addr())
	pub := redisBus(t, srv.Addr())
	a := startAPI(t, pub, func(o *publish.Options) { o.PublishTimeout = 300 * time.Millisecond })
	f := realFeed(t, "1359539")
	id := f.m.ID()
	w := watch(t, gw, id)
	p := "/v1/matches/" + id
	first := a.do("PUT", p, f.start).must(t, 201)
	for _, b := range f.balls[:20] {
		a.do("POST", p+"/deliveries", b).must(t, 200)
	}
	verify(t, gw, id, w)
	srv.Kill()
	r := a.do("POST", p+"/deliveries", f.balls[20]).must(t, 503)
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("503 with Retry-After %q", r.header.Get("Retry-After"))
	}
	srv.Restart()
	// The provider retries until the store takes it.
	var ok reply
	servertest.Eventually(t, 15*time.Second, func() error {
		ok = a.do("POST", p+"/deliveries", f.balls[20])
		if ok.code != 200 {
			return fmt.Errorf("%s", ok)
		}
		return nil
	})
	if ok.pos.Seq != 22 || ok.pos.Epoch != first.pos.Epoch || ok.pos.Result != "applied" {
		t.Fatalf("after the restart: %s (first %s)", ok, first)
	}
	for _, b := range f.balls[21:40] {
		a.do("POST", p+"/deliveries", b).must(t, 200)
	}
	st := stored(t, pub, id)
	if st.Seq != 41 || st.Epoch != first.pos.Epoch || len(st.Journal) != 41 {
		t.Fatalf("re-seeded store at %s:%d with %d journal entries", st.Epoch, st.Seq, len(st.Journal))
	}
	verify(t, gw, id, w)
}

// Two publishers of one match (two API processes on one Redis): the store refuses the
// loser's write with 409 and nothing of it is published; its next write continues from
// the store.
func TestTwoPublishersTheLoserIsRefused(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	gw := startGateway(t, srv.Addr())
	a1 := startAPI(t, redisBus(t, srv.Addr()), nil)
	a2 := startAPI(t, redisBus(t, srv.Addr()), nil)
	f := realFeed(t, "335982")
	id := f.m.ID()
	w := watch(t, gw, id)
	p := "/v1/matches/" + id
	a1.do("PUT", p, f.start).must(t, 201)
	a2.do("POST", p+"/deliveries", f.balls[0]).must(t, 200) // a2 loads the store: seq 2
	// a1 still holds seq 1: the same ball is new to it, and the store refuses seq 2.
	if r := a1.do("POST", p+"/deliveries", f.balls[0]).must(t, 409); r.problem.Code != "store_conflict" {
		t.Fatalf("loser: %s", r)
	}
	// a1 reloads from the store and carries on; a2 is now the stale one.
	a1.do("POST", p+"/deliveries", f.balls[1]).must(t, 200)
	// a2's next ball is past its memory: it finds the store ahead, takes it, and goes on.
	if r := a2.do("POST", p+"/deliveries", f.balls[2]).must(t, 200); r.pos.Seq != 4 {
		t.Fatalf("a2 after the store moved on: %s", r)
	}
	if r := a1.do("POST", p+"/deliveries", f.balls[1]).must(t, 200); r.pos.Result != "duplicate" || r.pos.Seq != 3 {
		t.Fatalf("a1's retry of its ball: %s", r)
	}
	final := verify(t, gw, id, w)
	if final.Seq != 4 {
		t.Fatalf("final seq %d", final.Seq)
	}
}
