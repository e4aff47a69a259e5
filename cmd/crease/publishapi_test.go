package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"crease/server/servertest"
)

// The README's "Publishing your own feed", against a real `crease demo`: keys from
// CREASE_API_KEY (comma-separated), a match started and a ball posted with plain HTTP,
// the snapshot and the listing show them, and /metrics counts the store rules.
func TestDemoServesThePublishAPI(t *testing.T) {
	t.Setenv("CREASE_API_KEY", "first, K")
	p := startCrease(t, nil, "demo", "--sim", "0", "--speed", "1")
	base := "http://" + p.http
	do := func(method, path, body, key string) (int, string) {
		t.Helper()
		return apiRequest(t, method, base+path, body, key)
	}
	if code, body := do("PUT", "/v1/matches/final", `{"teams":["Lions","Tigers"],"match_type":"T20","overs":20}`, "wrong"); code != 401 {
		t.Fatalf("bad key: %d %s", code, body)
	}
	if code, body := do("PUT", "/v1/matches/final", `{"teams":["Lions","Tigers"],"match_type":"T20","overs":20,"venue":"Eden Park"}`, "K"); code != 201 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	ball := `{"innings":1,"team":"Lions","over":0,"ball":1,"delivery":{"batter":"A Khan","non_striker":"B Rao","bowler":"C Lee","runs":{"batter":4,"extras":0,"total":4}}}`
	if code, body := do("POST", "/v1/matches/final/deliveries", ball, "first"); code != 200 || !strings.Contains(body, `"seq":2`) {
		t.Fatalf("POST ball: %d %s", code, body)
	}
	_, snap := do("GET", "/v1/matches/final", "", "")
	var s struct {
		Epoch string
		Seq   uint64
		State struct {
			Score struct{ Runs int } `json:"score"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(snap), &s); err != nil || s.Seq != 2 || s.State.Score.Runs != 4 || s.Epoch == "" {
		t.Fatalf("snapshot %s: %v", snap, err)
	}
	if _, list := do("GET", "/v1/matches", "", ""); !strings.Contains(list, `{"match":"final","title":"Lions v Tigers","epoch":"`+s.Epoch+`","seq":2}`) {
		t.Fatalf("listing %s", list)
	}
	// OPTIONS names what each path takes on this listener: the snapshot's GET beside
	// the API's writes; a method a path does not take is 405.
	for path, want := range map[string]string{"/v1/matches/final": "GET, HEAD, PUT, OPTIONS", "/v1/matches/final/state": "PUT, PATCH, OPTIONS", "/v1/matches": "GET, HEAD, OPTIONS"} {
		req, _ := http.NewRequest("OPTIONS", base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Allow"); resp.StatusCode != 204 || got != want {
			t.Errorf("OPTIONS %s: %d Allow %q, want %q", path, resp.StatusCode, got, want)
		}
	}
	if code, body := do("DELETE", "/v1/matches/final/state", "", "K"); code != 405 {
		t.Errorf("DELETE state: %d %s", code, body)
	}
	m := servertest.ScrapeURL(t, http.DefaultClient, base+"/metrics")
	if m[`crease_store_publishes_total{result="new_epoch"}`] < 4 || m[`crease_store_publishes_total{result="applied"}`] < 1 ||
		m[`crease_api_requests_total{code="201",endpoint="match"}`] != 1 || m[`crease_api_requests_total{code="401",endpoint="match"}`] != 1 {
		t.Fatalf("metrics: %v", m)
	}
}

func TestServeAPIKeyNeedsTheEmbeddedBus(t *testing.T) {
	err := runServeQuiet(context.Background(), []string{"--api-key", "K", "--redis", "127.0.0.1:1", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "crease ingest --listen") {
		t.Fatalf("serve --api-key --redis: %v", err)
	}
	if err := runIngest(context.Background(), []string{"--redis", "127.0.0.1:1", "--listen", "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "--listen and --api-key") {
		t.Fatalf("ingest --listen without a key: %v", err)
	}
}
