package redisgw_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"crease/bus"
	"crease/client"
	"crease/server/servertest"
	"crease/server/servertest/v1client"
)

// TestNewEpochAfterFlush: Redis loses everything (FLUSHALL) and a publisher without
// memory starts the match over in a new epoch, at seqs below those already delivered.
// Clients of version 1, which ignore `epoch`, converge to the new stream because the
// gateway sends `resync` with reason epoch before its first delta; the new epoch's
// snapshot is served at once, below the seq delivered before (the "store behind" check
// compares positions only within an epoch); a late delta of the old epoch is dropped
// and counted. (Between the flush and the new epoch the gateway may still serve the
// snapshot it has cached, the state its clients hold; bus/redis
// TestSnapshotBehindDeliveredIs503 covers the 503 of a store that lost it.)
func TestNewEpochAfterFlush(t *testing.T) {
	t.Parallel()
	srv, g, pub := oneGateway(t)
	const match = "m1"
	old := servertest.NewPublisher(pub, match)
	old.Set(t, "innings", 1)
	var clients []*v1client.Client
	for range 4 {
		clients = append(clients, v1client.Dial(t, g.s.WSAddr().String(), g.http(), match))
	}
	for i := range 20 {
		old.Set(t, "runs", i)
	}
	converge(t, clients, client.Snapshot{Seq: old.Seq, State: old.State()})

	_ = pub.Close() // the publisher's process is gone (else it would re-seed the flushed store)
	if _, err := srv.Cli("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	fresh := servertest.NewPublisher(newBus(t, []string{srv.Addr()}, false, "pub2", nil), match)
	for i := range 5 {
		fresh.Set(t, "wickets", i)
	}
	final := client.Snapshot{Epoch: fresh.Epoch, Seq: fresh.Seq, State: fresh.State()}
	converge(t, clients, final)

	// A late delta of the old epoch (a publisher that did not notice) never reaches them.
	late := `{"type":"delta","match":"m1","epoch":"` + old.Epoch + `","seq":` + strconv.FormatUint(old.Seq+1, 10) +
		`,"prio":"high","ts":1,"patch":{"runs":99}}`
	if _, err := srv.Cli("PUBLISH", channel(match), late); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 5*time.Second, func() error {
		if n := metric(t, g, `crease_bus_dropped_total{reason="old_epoch"}`); n != 1 {
			return fmt.Errorf("old_epoch drops %v", n)
		}
		return nil
	})
	fresh.Set(t, "wickets", 5)
	final = client.Snapshot{Epoch: fresh.Epoch, Seq: fresh.Seq, State: fresh.State()}
	converge(t, clients, final)
	for i, c := range clients {
		if n := c.Resyncs("epoch"); n != 1 {
			t.Errorf("client %d: %d resyncs with reason epoch", i, n)
		}
	}
	if s := snapshot(t, g, match); s.Epoch != fresh.Epoch || s.Seq != fresh.Seq {
		t.Fatalf("snapshot at %s:%d, want %s:%d", s.Epoch, s.Seq, fresh.Epoch, fresh.Seq)
	}
	var rows []bus.MatchInfo
	if body, code := get(t, g.http()+"/v1/matches"); code != http.StatusOK || json.Unmarshal(body, &rows) != nil ||
		len(rows) != 1 || rows[0].Epoch != fresh.Epoch || rows[0].Seq != fresh.Seq {
		t.Fatalf("/v1/matches: HTTP %d %s, want the one row at %s:%d", code, body, fresh.Epoch, fresh.Seq)
	}
	resp, err := http.Get(g.http() + "/v1/matches/" + match)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if etag, want := resp.Header.Get("ETag"), `"`+fresh.Epoch+"."+strconv.FormatUint(fresh.Seq, 10)+`"`; etag != want {
		t.Fatalf("ETag %s, want %s", etag, want)
	}
}

func converge(t *testing.T, clients []*v1client.Client, final client.Snapshot) {
	t.Helper()
	for _, c := range clients {
		servertest.Eventually(t, 10*time.Second, func() error { return c.Converged(final) })
	}
}
