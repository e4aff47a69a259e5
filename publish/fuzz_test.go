package publish_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"crease/bus"
	"crease/publish"
)

// FuzzAPIRequest: any request body on any write endpoint never panics and never gets a
// 5xx from a healthy store; a refusal is problem+json and publishes nothing; a success
// answers the position, which the store holds.
func FuzzAPIRequest(f *testing.F) {
	f.Add(uint8(0), []byte(`{"teams":["A","B"],"match_type":"T20","overs":20}`))
	f.Add(uint8(1), []byte(`{"innings":1,"team":"A","over":0,"ball":1,"delivery":{"batter":"a","non_striker":"b","bowler":"c","runs":{"batter":4,"extras":0,"total":4}}}`))
	f.Add(uint8(1), []byte(`{"innings":1,"team":"A","over":0,"ball":2,"prio":"high","delivery":{"batter":"a","non_striker":"b","bowler":"c","runs":{"batter":0,"extras":1,"total":1},"extras":{"wides":1}}}`))
	f.Add(uint8(2), []byte(`{"title":"Open","set":{"a":1}}`))
	f.Add(uint8(3), []byte(`{"set":{"a":null,"b":[1,2]}}`))
	f.Add(uint8(4), []byte(`{"kind":"note","text":"rain"}`))
	f.Add(uint8(1), []byte(`{"innings":1,"team":"A","over":0,"ball":1,"delivery":{"batter":"a","non_striker":"a","bowler":"c","runs":{"batter":-4}}}`))
	f.Add(uint8(4), []byte("{\"kind\":\"note\",\"text\":\"x\xffy\"}"))
	f.Add(uint8(3), []byte(`{}`))
	type ep struct{ method, path, ctype string }
	eps := []ep{
		{"PUT", "/v1/matches/m", "application/json"},
		{"POST", "/v1/matches/m/deliveries", "application/json"},
		{"PUT", "/v1/matches/s/state", "application/json"},
		{"PATCH", "/v1/matches/s/state", "application/merge-patch+json"},
		{"POST", "/v1/matches/m/events", "application/json"},
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		b := bus.NewEmbedded()
		a, err := publish.New(publish.Options{Bus: b, Keys: []string{"k"}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		send := func(e ep, body []byte) *httptest.ResponseRecorder {
			req := httptest.NewRequest(e.method, e.path, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer k")
			req.Header.Set("Content-Type", e.ctype)
			w := httptest.NewRecorder()
			a.ServeHTTP(w, req)
			return w
		}
		// A match to post balls to, and a state match to patch.
		send(eps[0], []byte(`{"teams":["A","B"],"match_type":"T20","overs":20}`))
		send(eps[2], []byte(`{"set":{"a":0}}`))
		before := map[string]uint64{}
		for _, m := range []string{"m", "s"} {
			st, _ := b.Stored(t.Context(), m)
			before[m] = st.Seq
		}
		e := eps[int(which)%len(eps)]
		w := send(e, body)
		switch {
		case w.Code >= 500:
			t.Fatalf("%s %s %q: %d %s", e.method, e.path, body, w.Code, w.Body)
		case w.Code >= 400:
			if w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d without problem+json", w.Code)
			}
			for _, m := range []string{"m", "s"} {
				if st, _ := b.Stored(t.Context(), m); st.Seq != before[m] {
					t.Fatalf("a refused %s %s published: %d %s", e.method, e.path, w.Code, w.Body)
				}
			}
		default:
			var pos struct {
				Match, Epoch string
				Seq          uint64
			}
			if err := json.Unmarshal(w.Body.Bytes(), &pos); err != nil || pos.Match == "" {
				t.Fatalf("answer %s: %v", w.Body, err)
			}
			if e.method != "POST" || e.path != "/v1/matches/m/events" {
				if st, err := b.Stored(t.Context(), pos.Match); err != nil || st.Seq != pos.Seq || st.Epoch != pos.Epoch {
					t.Fatalf("answered %+v, stored %+v %v", pos, st.Snapshot, err)
				}
			}
		}
		_ = http.StatusOK
	})
}
