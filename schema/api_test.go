package schema_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"crease/publish"
	"crease/server"
	"crease/server/servertest"
)

const apiKey = "schema-test-key"

// apiTraffic drives a real publish API on the bus of a real gateway: a real match PUT
// from its file's info and posted ball by ball (each body and answer recorded), a ball
// posted again, an event, a state of another sport PUT and PATCHed, and refused
// requests (their problems recorded); then the gateway's snapshot of the match.
func apiTraffic(t *testing.T) []instance {
	t.Helper()
	b := servertest.NewBus()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 1})
	a, err := publish.New(publish.Options{Bus: b, Keys: []string{apiKey}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	var out []instance
	call := func(method, path, ctype string, body []byte, wantStatus int) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, got, wantStatus)
		}
		what := fmt.Sprintf("%s %s answer %d", method, path, resp.StatusCode)
		if resp.StatusCode < 300 {
			out = append(out, instance{"publish-result.schema.json", what, got})
		} else if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", what, ct)
		} else {
			out = append(out, instance{"problem.schema.json", what, got})
		}
		return got
	}
	const id = "api-335982"
	bodies := publishBodies(t, "../ingest/matches/335982.json")
	// A live match has no outcome yet: the API would refuse every ball after a result.
	var infoObj map[string]json.RawMessage
	if err := json.Unmarshal(bodies[0].Doc, &infoObj); err != nil {
		t.Fatal(err)
	}
	delete(infoObj, "outcome")
	liveInfo, _ := json.Marshal(infoObj)
	info := instance{"publish-match.schema.json", "live info", liveInfo}
	out = append(out, info)
	call("PUT", "/v1/matches/"+id, "application/json", info.Doc, http.StatusCreated)
	call("PUT", "/v1/matches/"+id, "application/json", info.Doc, http.StatusOK)
	for i, ball := range bodies[1:] {
		call("POST", "/v1/matches/"+id+"/deliveries", "application/json", ball.Doc, http.StatusOK)
		if i == 0 { // posted again: a duplicate, answered with the seq it got
			if got := call("POST", "/v1/matches/"+id+"/deliveries", "application/json", ball.Doc, http.StatusOK); !bytes.Contains(got, []byte(`"duplicate"`)) {
				t.Errorf("a ball posted again: %s", got)
			}
		}
	}
	out = append(out, bodies[1:]...)
	ev := []byte(`{"kind":"commentary","text":"That's the match","over":"15.1"}`)
	out = append(out, instance{"publish-event.schema.json", "event body", ev})
	call("POST", "/v1/matches/"+id+"/events", "application/json", ev, http.StatusOK)
	st := []byte(`{"home":1,"away":0,"minute":67}`)
	patch := []byte(`{"away":1,"minute":71}`)
	out = append(out, instance{"publish-state.schema.json", "PUT state body", st}, instance{"publish-state.schema.json", "PATCH body", patch})
	call("PUT", "/v1/matches/derby/state", "application/json", st, http.StatusOK)
	call("PATCH", "/v1/matches/derby/state", "application/merge-patch+json", patch, http.StatusOK)
	// Refusals: malformed JSON, an unknown member, a ball that skips a position.
	call("POST", "/v1/matches/"+id+"/deliveries", "application/json", []byte(`{"innings":`), http.StatusBadRequest)
	call("PUT", "/v1/matches/other/state", "application/json", []byte(`[1,2]`), http.StatusBadRequest)
	skip := strings.Replace(string(bodies[1].Doc), `"ball":1`, `"ball":3`, 1)
	call("PUT", "/v1/matches/api-skip", "application/json", info.Doc, http.StatusCreated)
	call("POST", "/v1/matches/api-skip/deliveries", "application/json", []byte(skip), http.StatusConflict)

	snap := get(t, servertest.HTTPURL(s)+"/v1/matches/"+id)
	var sn struct {
		State json.RawMessage `json:"state"`
	}
	_ = json.Unmarshal(snap, &sn)
	out = append(out, instance{"snapshot.schema.json", "snapshot of a match posted ball by ball", snap},
		instance{"state.schema.json", "state of a match posted ball by ball", sn.State},
		instance{"match-list.schema.json", "match list", get(t, servertest.HTTPURL(s)+"/v1/matches")})
	return out
}

// TestPublishAPITrafficValidates: every body sent to and answer of a real publish API,
// and the state it published, are valid.
func TestPublishAPITrafficValidates(t *testing.T) {
	count := map[string]int{}
	for _, d := range apiTraffic(t) {
		count[d.Schema]++
		if err := validate(t, d.Schema, d.Doc); err != nil {
			t.Errorf("%s (%s): %v\n%.400s", d.Schema, d.What, err, d.Doc)
		}
	}
	for _, want := range []string{"publish-result.schema.json", "problem.schema.json", "publish-match.schema.json", "publish-delivery.schema.json", "state.schema.json"} {
		if count[want] == 0 {
			t.Errorf("no %s document in the API traffic", want)
		}
	}
	t.Logf("validated %v", count)
}
