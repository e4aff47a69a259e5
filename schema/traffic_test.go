package schema_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/golang-jwt/jwt/v5"

	"crease/bus"
	"crease/ingest"
	"crease/internal/livefeed"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// instance is one document of real traffic and the schema it must satisfy.
type instance struct {
	Schema string          `json:"schema"`
	What   string          `json:"why"`
	Doc    json.RawMessage `json:"instance"`
}

// traffic records a real gateway's traffic around one replayed match: every frame of a
// raw WebSocket connection (hello, subscribed with and without since, the match's
// deltas and commentary, errors for refused ops, a resync, the drain's reconnect), the
// ops sent, every state the deltas build, the snapshot and the match list.
func traffic(t *testing.T) []instance {
	t.Helper()
	matches, err := ingest.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	m := matches[0]
	b := servertest.NewBus()
	// A budget far above the match's size: on a loaded machine this reader may lag, and a
	// slow-consumer resync would cut the chain of deltas the states are built from.
	s := servertest.Run(t, server.Options{Bus: b, Loops: 1, DrainWindow: 200 * time.Millisecond, DrainGrace: 5 * time.Second,
		Shard: shard.Options{Budget: 16 << 20, StallLimit: time.Minute, CutLimit: 2 * time.Minute}})
	base := servertest.HTTPURL(s)
	c, resp, err := servertest.DialWS(s.WSAddr().String(), "/ws?match="+m.ID(), nil, "")
	if err != nil || c == nil {
		t.Fatalf("dial: %v %v", resp, err)
	}
	defer c.Close()

	var out []instance
	frames := make(chan servertest.Frame, 4096)
	go func() {
		defer close(frames)
		for {
			f, err := c.Next(time.Now().Add(30 * time.Second))
			if err != nil || f.Close != 0 {
				return
			}
			frames <- f
		}
	}()
	seen := map[string]int{}
	state := []byte("{}")
	// await records frames until one satisfies cond.
	await := func(what string, cond func(servertest.Frame) bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case f, ok := <-frames:
				if !ok {
					t.Fatalf("connection ended waiting for %s (seen %v)", what, seen)
				}
				seen[f.Type]++
				out = append(out, instance{"server-frame.schema.json", f.Type + " frame", f.Raw})
				if f.Type == "delta" && f.Match == m.ID() {
					var d struct {
						Patch json.RawMessage `json:"patch"`
					}
					_ = json.Unmarshal(f.Raw, &d)
					if state, err = jsonpatch.MergePatch(state, d.Patch); err != nil {
						t.Fatalf("applying the patch of seq %d: %v", f.Seq, err)
					}
					out = append(out, instance{"state.schema.json", fmt.Sprintf("state at seq %d", f.Seq), state})
				}
				if cond(f) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s within 30 s (seen %v)", what, seen)
			}
		}
	}
	is := func(typ string) func(servertest.Frame) bool {
		return func(f servertest.Frame) bool { return f.Type == typ }
	}
	send := func(op string, valid bool) {
		t.Helper()
		if err := c.Send(op); err != nil {
			t.Fatal(err)
		}
		if valid {
			out = append(out, instance{"client-op.schema.json", "op sent", json.RawMessage(op)})
		}
	}
	await("hello", is("hello"))
	await("subscribed", is("subscribed"))
	send(`{"op":"subscribe","match":"other-match"}`, true)
	await("subscribed other-match", is("subscribed"))
	send(`{"op":"unsubscribe","match":"other-match"}`, true)
	send(`{"op":"subscribe","match":"bad id!"}`, false)
	await("error for a bad match id", is("error"))
	send(`{"op":"dance"}`, false)
	await("error for an unknown op", is("error"))

	done := make(chan error, 1)
	go func() { done <- ingest.Replay(context.Background(), b, m, ingest.ReplayOptions{Speed: 500}) }()
	var last servertest.Frame
	await("the match's last delta", func(f servertest.Frame) bool {
		if f.Type == "delta" {
			last = f
		}
		return f.Type == "delta" && f.Seq == uint64(m.Steps())
	})
	if err := <-done; err != nil {
		t.Fatalf("replay: %v", err)
	}
	snap := get(t, base+"/v1/matches/"+m.ID())
	out = append(out, instance{"snapshot.schema.json", "snapshot", snap}, instance{"match-list.schema.json", "match list", get(t, base+"/v1/matches")})
	var sn struct {
		Epoch string          `json:"epoch"`
		Seq   uint64          `json:"seq"`
		State json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(snap, &sn); err != nil {
		t.Fatal(err)
	}
	out = append(out, instance{"state.schema.json", "snapshot state", sn.State})
	if sn.Seq != last.Seq || !jsonpatch.Equal(sn.State, state) {
		t.Fatalf("the deltas built a state at seq %d that is not the snapshot's at seq %d", last.Seq, sn.Seq)
	}

	b.Lost(m.ID(), bus.ReasonGap)
	await("resync", is("resync"))
	send(fmt.Sprintf(`{"op":"subscribe","match":%q,"since":{"epoch":%q,"seq":%d}}`, m.ID(), sn.Epoch, sn.Seq), true)
	await("subscribed after since", is("subscribed"))
	go s.Drain(context.Background())
	await("reconnect", is("reconnect"))
	for _, typ := range []string{"hello", "subscribed", "delta", "event", "resync", "reconnect", "error"} {
		if seen[typ] == 0 {
			t.Errorf("the traffic had no %s frame (seen %v)", typ, seen)
		}
	}
	files, err := filepath.Glob("../ingest/matches/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no match files: %v", err)
	}
	return append(out, publishBodies(t, files...)...)
}

func get(t *testing.T, url string) json.RawMessage {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// publishBodies are the publish API bodies of real Cricsheet files: each file's info
// (PUT /v1/matches/{id}) and then each of its balls in order (POST .../deliveries).
func publishBodies(t *testing.T, files ...string) []instance {
	t.Helper()
	var out []instance
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lf, err := livefeed.FromFile(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, instance{"publish-match.schema.json", filepath.Base(f) + " info", lf.End})
		for i, b := range lf.Balls {
			out = append(out, instance{"publish-delivery.schema.json", fmt.Sprintf("%s ball %d", filepath.Base(f), i+1), b})
		}
	}
	return out
}

// edgeTraffic records the frames of a gateway with --jwt-secret that the replayed match
// does not bring: the `error` unauthorized of an auth op with a refused token, and the
// catch-up delta with from 0 that replays a whole stream to a connection holding seq 0
// (the schema once refused both).
func edgeTraffic(t *testing.T) []instance {
	t.Helper()
	secret := []byte("schema-test-secret")
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 1, JWTSecret: secret})
	p := servertest.NewPublisher(b, "m1")
	for i := 1; i <= 4; i++ {
		p.Set(t, fmt.Sprintf("k%d", i), i)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	c, resp, err := servertest.DialWS(s.WSAddr().String(), "/ws?catchup=1&token="+tok, nil, "")
	if err != nil || c == nil {
		t.Fatalf("dial: %v %v", resp, err)
	}
	defer c.Close()
	var out []instance
	expect := func(typ string) servertest.Frame {
		t.Helper()
		f := c.Expect(t, typ)
		out = append(out, instance{"server-frame.schema.json", f.Type + " frame", f.Raw})
		return f
	}
	expect("hello")
	for _, op := range []string{`{"op":"auth","token":"not.a.jwt"}`,
		fmt.Sprintf(`{"op":"subscribe","match":"m1","since":{"epoch":%q,"seq":0}}`, p.Epoch)} {
		if err := c.Send(op); err != nil {
			t.Fatal(err)
		}
		out = append(out, instance{"client-op.schema.json", "op sent", json.RawMessage(op)})
	}
	if f := expect("error"); !strings.Contains(string(f.Raw), `"code":"unauthorized"`) {
		t.Fatalf("auth with a bad token: %s, want error unauthorized", f.Raw)
	}
	if f := expect("subscribed"); !strings.Contains(string(f.Raw), `"recovered":true`) {
		t.Fatalf("subscribe since seq 0: %s, want recovered:true", f.Raw)
	}
	if f := expect("delta"); f.Seq != 4 || !strings.Contains(string(f.Raw), `"from":0`) {
		t.Fatalf("the replay since seq 0: %s, want one delta 4 from 0", f.Raw)
	}
	return out
}

// TestRealTrafficValidates: every document of a real gateway's traffic around a
// replayed match, the frames of edgeTraffic, and every publish body of the real match
// files, is valid.
func TestRealTrafficValidates(t *testing.T) {
	docs := append(traffic(t), edgeTraffic(t)...)
	count := map[string]int{}
	for _, d := range docs {
		count[d.Schema]++
		if err := validate(t, d.Schema, d.Doc); err != nil {
			t.Errorf("%s (%s): %v\n%.400s", d.Schema, d.What, err, d.Doc)
		}
	}
	t.Logf("validated %v", count)
}
