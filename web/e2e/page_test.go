package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
	"crease/web"
)

// replaySpeed is about 20 balls a second: a T20 match takes some 13 s.
const replaySpeed = 20

// checkAgainstReplay fails the test if the page shows a score that is not the one
// published at the seq it shows.
func checkAgainstReplay(t *testing.T, rec *recorder, v view) {
	t.Helper()
	if v.Seq == 0 {
		return
	}
	want, ok := rec.score(v.Seq)
	if !ok {
		t.Errorf("page shows seq %d, which was never published", v.Seq)
	} else if v.Score != want {
		t.Errorf("page shows %q at seq %d; the state published at that seq has %q", v.Score, v.Seq, want)
	}
}

// converge stops the replay and waits until the page shows the REST snapshot: same seq,
// same runs/wickets, status live.
func converge(t *testing.T, ctx context.Context, rp *replay, base, match string, token ...string) view {
	t.Helper()
	rp.stop(t)
	snap := getSnapshot(t, base, match, token...)
	v := waitView(t, ctx, 15*time.Second, "the snapshot's seq", func(v view) bool {
		return v.Seq == snap.Seq && v.Status == "live"
	})
	if v.Score != snap.Score || v.Match != match {
		t.Errorf("page shows match %q %q at seq %d; GET /v1/matches/%s has %q at seq %d", v.Match, v.Score, v.Seq, match, snap.Score, snap.Seq)
	}
	return v
}

func TestPageShowsTheSnapshotScoreWhileAMatchReplays(t *testing.T) {
	ctx := newTab(t, 60*time.Second)
	m := servertest.RealMatch(t)
	rec, _, base := pageGateway(t, server.Options{})

	rp := startReplay(t, rec, m, replaySpeed)
	rec.waitSeq(t, 10, 10*time.Second) // open the page mid-match
	navigate(t, ctx, base, m.ID())

	first := waitView(t, ctx, 15*time.Second, "live with a state", func(v view) bool { return v.Status == "live" && v.Seq > 0 })
	checkAgainstReplay(t, rec, first)

	// While the match replays, every sample of the page must be the published state at
	// its seq, and the seq must move on.
	seqs := []uint64{first.Seq}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		v, err := look(ctx)
		if err != nil {
			t.Fatalf("page: %v", err)
		}
		checkAgainstReplay(t, rec, v)
		if last := seqs[len(seqs)-1]; v.Seq < last {
			t.Errorf("page went back from seq %d to %d", last, v.Seq)
		} else if v.Seq > last {
			seqs = append(seqs, v.Seq)
		}
	}
	if len(seqs) < 5 {
		t.Errorf("page showed only the seqs %v in 3 s of a replay at %d/s", seqs, replaySpeed)
	}

	v := converge(t, ctx, rp, base, m.ID())
	t.Logf("page at seq %d shows %s (%s ov), as the snapshot; seqs seen while replaying: %d", v.Seq, v.Score, v.Overs, len(seqs))
}

func TestPageReconnectsToARestartedGatewayAndConverges(t *testing.T) {
	ctx := newTab(t, 90*time.Second)
	m := servertest.RealMatch(t)
	b := servertest.NewBus()
	rec := newRecorder(b)
	// Fixed ports, so that the page (which learnt the WebSocket URL from /config.json
	// once) finds the new gateway where the old one was.
	opts := server.Options{WSAddr: servertest.FreeAddr(t), HTTPAddr: servertest.FreeAddr(t), Bus: b, Page: web.Handler(), Loops: 1}
	s1 := servertest.Run(t, opts)
	base := servertest.HTTPURL(s1)

	rp := startReplay(t, rec, m, replaySpeed)
	rec.waitSeq(t, 5, 10*time.Second)
	navigate(t, ctx, base, m.ID())
	before := waitView(t, ctx, 15*time.Second, "live with a state", func(v view) bool { return v.Status == "live" && v.Seq > 0 })
	checkAgainstReplay(t, rec, before)

	s1.Shutdown() // every connection closed with 1001, listeners gone
	down := waitView(t, ctx, 10*time.Second, "status reconnecting", func(v view) bool { return v.Status == "reconnecting" })
	if !strings.HasPrefix(down.Badge, "Reconnecting in ") {
		t.Errorf("badge %q while reconnecting", down.Badge)
	}
	// The match goes on while no gateway runs: the page must catch up from the snapshot.
	downSeq := rec.lastSeq()
	rec.waitSeq(t, downSeq+5, 10*time.Second)

	servertest.WaitBindable(t, opts.WSAddr)
	servertest.WaitBindable(t, opts.HTTPAddr)
	s2 := servertest.Run(t, opts)
	if got := servertest.HTTPURL(s2); got != base {
		t.Fatalf("new gateway on %s, want %s", got, base)
	}
	// The page's backoff spreads the first try over 0-5 s and keeps that window.
	back := waitView(t, ctx, 25*time.Second, "live again, past the outage", func(v view) bool {
		return v.Status == "live" && v.Seq > downSeq+5
	})
	checkAgainstReplay(t, rec, back)
	v := converge(t, ctx, rp, base, m.ID())

	if !slices.Contains(v.Statuses, "reconnecting") {
		t.Errorf("statuses %v never reconnecting", v.Statuses)
	}
	if n := servertest.Metric(t, base, `crease_handshakes_total{result="ok"}`); n < 1 {
		t.Errorf("the new gateway saw %v handshakes", n)
	}
	t.Logf("page left seq %d, reconnected, shows %s at seq %d; statuses %v", before.Seq, v.Score, v.Seq, compact(v.Statuses))
}

func TestResyncFrameRefetchesTheSnapshotOnTheSameConnection(t *testing.T) {
	ctx := newTab(t, 60*time.Second)
	m := servertest.RealMatch(t)
	rec, b, base := pageGateway(t, server.Options{})

	// What the browser does on the network, seen through the DevTools protocol.
	var mu sync.Mutex
	var snapshotGETs, sockets int
	var resyncs []string
	snapURL := base + "/v1/matches/" + m.ID()
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Request.URL == snapURL {
				snapshotGETs++
			}
		case *network.EventWebSocketCreated:
			sockets++
		case *network.EventWebSocketFrameReceived:
			var f struct{ Type, Match, Reason string }
			if json.Unmarshal([]byte(ev.Response.PayloadData), &f) == nil && f.Type == "resync" {
				resyncs = append(resyncs, f.Match+":"+f.Reason)
			}
		}
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	counts := func() (int, int, []string) {
		mu.Lock()
		defer mu.Unlock()
		return snapshotGETs, sockets, slices.Clone(resyncs)
	}

	rp := startReplay(t, rec, m, replaySpeed)
	rec.waitSeq(t, 5, 10*time.Second)
	navigate(t, ctx, base, m.ID())
	waitView(t, ctx, 15*time.Second, "live with a state", func(v view) bool { return v.Status == "live" && v.Seq > 0 })
	gets0, sockets0, resyncs0 := counts()
	hs0 := servertest.Metric(t, base, `crease_handshakes_total{result="ok"}`)
	if gets0 != 1 || sockets0 != 1 || len(resyncs0) != 0 || hs0 != 1 {
		t.Fatalf("before the resync: %d snapshot GETs, %d WebSockets, resyncs %v, %v handshakes; want 1, 1, none, 1", gets0, sockets0, resyncs0, hs0)
	}

	b.Lost(m.ID(), bus.ReasonGap) // as a bus that lost messages: the gateway sends resync{gap}
	servertest.Eventually(t, 10*time.Second, func() error {
		if gets, _, rs := counts(); gets <= gets0 || len(rs) == 0 {
			return fmt.Errorf("after Lost: %d snapshot GETs (had %d), resync frames %v", gets, gets0, rs)
		}
		return nil
	})
	v := converge(t, ctx, rp, base, m.ID())

	gets, sockets, rs := counts()
	if want := []string{m.ID() + ":gap"}; !slices.Equal(rs, want) {
		t.Errorf("resync frames %v, want %v", rs, want)
	}
	if gets != gets0+1 {
		t.Errorf("%d snapshot GETs after one resync, want %d", gets, gets0+1)
	}
	if sockets != sockets0 {
		t.Errorf("%d WebSockets after the resync, want %d (no reconnect)", sockets, sockets0)
	}
	if hs := servertest.Metric(t, base, `crease_handshakes_total{result="ok"}`); hs != hs0 {
		t.Errorf("gateway handshakes went from %v to %v", hs0, hs)
	}
	// Statuses: connecting until the first live, then only live and resyncing.
	first := slices.Index(v.Statuses, "live")
	if first < 0 || !slices.Contains(v.Statuses[first:], "resyncing") {
		t.Errorf("statuses %v: want live, then resyncing, then live", v.Statuses)
	}
	for _, st := range v.Statuses[max(first, 0):] {
		if st != "live" && st != "resyncing" {
			t.Errorf("statuses %v: %q after live", v.Statuses, st)
			break
		}
	}
	t.Logf("resync %v: snapshot GETs %d -> %d on one WebSocket; statuses %v", rs, gets0, gets, compact(v.Statuses))
}

// compact drops repeats in a row.
func compact(ss []string) []string { return slices.Compact(slices.Clone(ss)) }
