package pkgtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"crease/ingest"
	"crease/server"
	"crease/server/servertest"
)

// TestNodeRecoversFromHistory: the installed package under Node follows a real match
// across a restart of its gateway on the same ports. It reconnects with `since`, and the
// new gateway replays what it missed from the match's history: as the deltas, or with
// `catchup: true` as one delta with `from`. It never refetches the snapshot, and ends
// holding exactly the snapshot's state.
func TestNodeRecoversFromHistory(t *testing.T) {
	dir, matches := followSetup(t)
	m := matches[0]
	for _, mode := range []string{"plain", "catchup"} {
		t.Run(mode, func(t *testing.T) {
			b := servertest.NewBus()
			opts := server.Options{WSAddr: servertest.FreeAddr(t), HTTPAddr: servertest.FreeAddr(t), Bus: b, Loops: 1}
			s1 := servertest.Run(t, opts)
			base := servertest.HTTPURL(s1)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			node := startNode(t, ctx, dir, filepath.Join(dir, "follow.mjs"), servertest.WSURL(s1, ""), base, m.ID(), "ws", mode)
			cmd, stdin, stderr := node.cmd, node.stdin, node.stderr
			type line struct {
				Seq   uint64          `json:"seq"`
				Cause string          `json:"cause"`
				Final json.RawMessage `json:"final"`
			}
			lines := jsonLines[line](node.stdout, 4096)
			causes := map[string]int{}
			var final json.RawMessage
			// next reads node's lines until cond holds for one.
			next := func(what string, cond func(line) bool) {
				t.Helper()
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("node exited waiting for %s: %v\n%s", what, cmd.Wait(), stderr.String())
						}
						if l.Cause != "" {
							causes[l.Cause]++
						}
						if l.Final != nil {
							final = l.Final
						}
						if cond(l) {
							return
						}
					case <-ctx.Done():
						t.Fatalf("waiting for %s: %v\n%s", what, ctx.Err(), stderr.String())
					}
				}
			}
			next("a first state", func(l line) bool { return l.Cause != "" })
			done := make(chan error, 1)
			go func() { done <- ingest.Replay(ctx, b, m, ingest.ReplayOptions{Speed: 100}) }()
			next("seq 20", func(l line) bool { return l.Seq >= 20 })
			s1.Shutdown() // the match goes on with no gateway: only the history holds it
			servertest.WaitBindable(t, opts.WSAddr)
			servertest.WaitBindable(t, opts.HTTPAddr)
			s2 := servertest.Run(t, opts)
			if err := <-done; err != nil {
				t.Fatalf("replay: %v", err)
			}
			snapSeq, snapState := snapshot(t, base, m.ID())
			fmt.Fprintf(stdin, "%d\n", snapSeq)
			next("the final state", func(l line) bool { return l.Final != nil })
			if err := cmd.Wait(); err != nil {
				t.Errorf("node: %v\n%s", err, stderr.String())
			}
			var got, want any
			if err := json.Unmarshal(final, &got); err != nil {
				t.Fatalf("final state %s: %v", final, err)
			}
			_ = json.Unmarshal(snapState, &want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("node's final state differs from the snapshot's at %d", snapSeq)
			}
			s2base := servertest.HTTPURL(s2)
			recovered := servertest.Metric(t, s2base, `crease_recoveries_total{result="recovered"}`)
			composed := servertest.Metric(t, s2base, `crease_catchups_total{result="composed",source="replay"}`)
			if causes["resync"] != 0 || recovered != 1 || (mode == "catchup") != (composed == 1) {
				t.Errorf("causes %v, recovered %v, composed replays %v: want no refetch, one recovery (one delta with catchup)", causes, recovered, composed)
			}
			t.Logf("%s: followed to seq %d across the restart (%v), recovered %v, composed %v", mode, snapSeq, causes, recovered, composed)
		})
	}
}
