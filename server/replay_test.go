package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"crease/bus"
	"crease/ingest"
	"crease/server"
	"crease/server/servertest"
)

type snapshotDoc struct {
	Match string          `json:"match"`
	Epoch string          `json:"epoch"`
	Seq   uint64          `json:"seq"`
	State json.RawMessage `json:"state"`
}

func getSnapshot(t testing.TB, s *server.Server, match string) snapshotDoc {
	t.Helper()
	resp, err := http.Get(servertest.HTTPURL(s) + "/v1/matches/" + match)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("snapshot %s: %d %s", match, resp.StatusCode, body)
	}
	var d snapshotDoc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("ETag") != fmt.Sprintf(`"%s.%d"`, d.Epoch, d.Seq) {
		t.Fatalf("ETag %s for seq %d", resp.Header.Get("ETag"), d.Seq)
	}
	return d
}

// An independent client (gorilla/websocket and evanphx/json-patch, none of crease's
// client code) joins a real match mid-replay, follows the client algorithm of
// PROTOCOL.md, and ends with exactly the REST snapshot's state; events arrive and the
// seqs it sees are gap-free.
func TestIndependentClientRebuildsRealMatch(t *testing.T) {
	matches, err := ingest.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	m := matches[0]
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ingest.Replay(ctx, b, m, ingest.ReplayOptions{Speed: 400}) }()

	// Join mid-match.
	waitFor(t, func() bool {
		snap, err := b.Snapshot(context.Background(), m.ID())
		return err == nil && snap.Seq > 40
	}, "the match to be under way")

	c := dial(t, s, "")
	expect(t, c, "hello")
	send(t, c, fmt.Sprintf(`{"op":"subscribe","match":%q}`, m.ID()))
	expect(t, c, "subscribed")

	snap := getSnapshot(t, s, m.ID())
	state, last := []byte(snap.State), snap.Seq
	applied, stale, events := 0, 0, 0
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read after seq %d: %v", last, err)
		}
		var h struct {
			Type  string          `json:"type"`
			Seq   uint64          `json:"seq"`
			Patch json.RawMessage `json:"patch"`
			Kind  string          `json:"kind"`
		}
		if err := json.Unmarshal(data, &h); err != nil {
			t.Fatalf("bad frame %q: %v", data, err)
		}
		switch h.Type {
		case "event":
			events++
		case "resync":
			t.Fatalf("unexpected resync for a fast client: %s", data)
		case "delta":
			switch {
			case h.Seq <= last:
				stale++
				continue
			case h.Seq != last+1:
				t.Fatalf("gap: seq %d after %d", h.Seq, last)
			}
			if state, err = jsonpatch.MergePatch(state, h.Patch); err != nil {
				t.Fatalf("patch %d: %v", h.Seq, err)
			}
			last = h.Seq
			applied++
		}
		// The replay ends with the result: stop once the state held is finished and
		// nothing newer is stored.
		if h.Type == "delta" && json.Valid(state) {
			var st struct{ Status string }
			_ = json.Unmarshal(state, &st)
			if cur, err := b.Snapshot(context.Background(), m.ID()); st.Status == "finished" && err == nil && cur.Seq == last {
				break
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("replay: %v", err)
	}
	final := getSnapshot(t, s, m.ID())
	if !jsonEqual(t, state, final.State) {
		t.Fatalf("rebuilt state differs from the snapshot at seq %d:\n got %s\nwant %s", final.Seq, state, final.State)
	}
	if applied < 100 || events == 0 {
		t.Fatalf("applied %d deltas (%d stale), %d events", applied, stale, events)
	}
	var st struct {
		Status string `json:"status"`
		Result string `json:"result"`
	}
	_ = json.Unmarshal(state, &st)
	if st.Status != "finished" || st.Result == "" {
		t.Fatalf("final state status %q result %q", st.Status, st.Result)
	}
}

func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}
