package pkgtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"crease/ingest"
	"crease/internal/npmtest"
	"crease/server"
	"crease/server/servertest"
)

// followed is what follow.mjs reported.
type followed struct {
	statuses []string
	causes   map[string]int
	final    json.RawMessage
	seq      uint64
}

// TestNodeFollowsALiveMatchToTheSnapshot: the installed package, run by Node against a
// live gateway, follows a real match replaying from before its first ball to its end
// and holds exactly the snapshot's state at the snapshot's seq; with the ws package
// injected, and with Node's built-in WebSocket (Node 22, or 20 with
// --experimental-websocket).
func TestNodeFollowsALiveMatchToTheSnapshot(t *testing.T) {
	dir, matches := followSetup(t)
	for i, mode := range []string{"ws", "builtin"} {
		t.Run(mode, func(t *testing.T) {
			var nodeArgs []string
			if mode == "builtin" && npmtest.NodeMajor(t) < 22 {
				nodeArgs = append(nodeArgs, "--experimental-websocket", "--no-warnings")
			}
			m := matches[i%len(matches)]
			b := servertest.NewBus()
			s := servertest.Run(t, server.Options{Bus: b, Loops: 1})
			base := servertest.HTTPURL(s)

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			node := startNode(t, ctx, dir, append(nodeArgs, filepath.Join(dir, "follow.mjs"),
				servertest.WSURL(s, ""), base, m.ID(), mode)...)
			cmd, stdin, stderr := node.cmd, node.stdin, node.stderr
			lines := jsonLines[map[string]json.RawMessage](node.stdout, 1024)
			got := followed{causes: map[string]int{}}
			record := func(l map[string]json.RawMessage) {
				if v, ok := l["status"]; ok {
					got.statuses = append(got.statuses, strings.Trim(string(v), `"`))
				}
				if v, ok := l["cause"]; ok {
					got.causes[strings.Trim(string(v), `"`)]++
				}
				if v, ok := l["error"]; ok {
					t.Errorf("error frame: %s", v)
				}
				if v, ok := l["final"]; ok {
					got.final = v
					_ = json.Unmarshal(l["seq"], &got.seq)
				}
			}
			// follow records node's lines until one has the key, or until stop delivers.
			follow := func(key string, stop <-chan error) error {
				t.Helper()
				for {
					select {
					case err := <-stop:
						return err
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("node exited: %v\n%s", cmd.Wait(), stderr.String())
						}
						record(l)
						if _, ok := l[key]; ok && key != "" {
							return nil
						}
					case <-ctx.Done():
						t.Fatalf("node: %v; statuses %v\n%s", ctx.Err(), got.statuses, stderr.String())
					}
				}
			}
			// A first state (null: the match has not started), then the replay, followed live.
			_ = follow("cause", nil)
			done := make(chan error, 1)
			go func() { done <- ingest.Replay(ctx, b, m, ingest.ReplayOptions{Speed: 400}) }()
			if err := follow("", done); err != nil {
				t.Fatalf("replay: %v", err)
			}
			snapSeq, snapState := snapshot(t, base, m.ID())
			fmt.Fprintf(stdin, "%d\n", snapSeq)
			_ = follow("final", nil)
			if err := cmd.Wait(); err != nil {
				t.Errorf("node: %v\n%s", err, stderr.String())
			}
			if got.seq != snapSeq {
				t.Errorf("node holds seq %d, the snapshot is at %d", got.seq, snapSeq)
			}
			var a, b2 any
			_ = json.Unmarshal(got.final, &a)
			_ = json.Unmarshal(snapState, &b2)
			if !reflect.DeepEqual(a, b2) {
				t.Errorf("node's final state differs from the snapshot's:\nnode:     %.600s\nsnapshot: %.600s", got.final, snapState)
			}
			if got.causes["delta"] < int(snapSeq)/2 || len(got.statuses) == 0 || got.statuses[len(got.statuses)-1] == "" {
				t.Errorf("node followed by %v over %d deltas, statuses %v: want most of them as deltas", got.causes, snapSeq, got.statuses)
			}
			t.Logf("%s: %s followed to seq %d (%v), statuses %v", mode, m.ID(), got.seq, got.causes, got.statuses)
		})
	}
}

// snapshot is GET /v1/matches/{id}: its seq and state.
func snapshot(t *testing.T, base, id string) (uint64, json.RawMessage) {
	t.Helper()
	resp, err := http.Get(base + "/v1/matches/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET snapshot: %d %v %s", resp.StatusCode, err, body)
	}
	var snap struct {
		Seq   uint64          `json:"seq"`
		State json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(body, &snap); err != nil || snap.Seq == 0 {
		t.Fatalf("snapshot %s: %v", body, errors.Join(err, fmt.Errorf("seq %d", snap.Seq)))
	}
	return snap.Seq, snap.State
}

// TestReadmeExampleFollowsAMatch runs the README's ten-line example as it stands, its
// gateway address pointed at a test gateway, under Node (the built-in WebSocket): it
// prints the score of every ball and exits by itself when the match is finished, its
// last line the snapshot's final score.
func TestReadmeExampleFollowsAMatch(t *testing.T) {
	p := npmtest.Pack(t)
	blocks := readmeBlocks(t, p.Files["README.md"])
	example := blocks[filepath.Join("readme", "block0.ts")]
	const addr = `"ws://localhost:8080/ws"`
	if !strings.Contains(example, addr) || !strings.Contains(example, "client.close()") {
		t.Fatalf("the README's first example no longer connects to %s and closes at the end:\n%s", addr, example)
	}
	matches, err := ingest.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	m := matches[2]
	b := servertest.NewBus()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 1})
	base := servertest.HTTPURL(s)
	example = strings.Replace(strings.ReplaceAll(example, `"1298150"`, `"`+m.ID()+`"`), addr,
		fmt.Sprintf("%q, httpBase: %q", servertest.WSURL(s, ""), base), 1)
	dir := npmtest.Scratch(t, p, map[string]string{"example.mjs": example})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"example.mjs"}
	if npmtest.NodeMajor(t) < 22 {
		args = append([]string{"--experimental-websocket", "--no-warnings"}, args...)
	}
	cmd := exec.CommandContext(ctx, npmtest.Node(t), args...)
	cmd.Dir = dir
	var stdout servertest.LockedBuffer
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The example says "not started yet" first; then the match replays.
	servertest.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(stdout.String(), "not started yet") {
			return fmt.Errorf("output so far: %q", stdout.String())
		}
		return nil
	})
	if err := ingest.Replay(ctx, b, m, ingest.ReplayOptions{Speed: 400}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("the example did not exit by itself: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	final := m.Final()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var last string
	for _, l := range lines {
		if strings.Contains(l, " overs (seq ") {
			last = l
		}
	}
	want := fmt.Sprintf("%d/%d in %s overs (seq %d)", final.Score.Runs, final.Score.Wickets, final.Over, m.Steps())
	if !strings.Contains(last, want) || final.Status != ingest.StatusFinished {
		t.Errorf("last score line %q, want %q (status %s)\n%s", last, want, final.Status, stdout.String())
	}
	t.Logf("%d lines; last %q", len(lines), last)
}
