package server_test

import (
	"testing"
	"time"

	"crease/bus"
	"crease/client"
	"crease/server"
	"crease/server/servertest"
	"crease/server/servertest/v1client"
)

// TestNewEpochResyncsClientsThatIgnoreEpochs: the embedded store loses a match and a
// publisher without memory starts it over in a new epoch, at seqs below those already
// delivered. Clients of version 1, which ignore `epoch` and would skip every delta of the
// new stream as stale, converge to its state because the gateway sends `resync` with
// reason epoch before its first delta; the Checker beside each sees rules 1 and 2 hold
// per epoch.
func TestNewEpochResyncsClientsThatIgnoreEpochs(t *testing.T) {
	t.Parallel()
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	const match = "m1"
	old := servertest.NewPublisher(b, match)
	old.Set(t, "innings", 1)
	ws, base := s.WSAddr().String(), servertest.HTTPURL(s)
	var clients []*v1client.Client
	for range 4 {
		clients = append(clients, v1client.Dial(t, ws, base, match))
	}
	for i := range 20 {
		old.Set(t, "runs", i)
	}
	converge(t, clients, client.Snapshot{Seq: old.Seq, State: old.State()})

	if !b.Forget(match) {
		t.Fatal("the store did not hold the match")
	}
	fresh := servertest.NewPublisher(b, match)
	for i := range 5 {
		fresh.Set(t, "wickets", i)
	}
	final := client.Snapshot{Epoch: fresh.Epoch, Seq: fresh.Seq, State: fresh.State()}
	converge(t, clients, final)
	for i, c := range clients {
		if n := c.Resyncs("epoch"); n != 1 {
			t.Errorf("client %d: %d resyncs with reason epoch", i, n)
		}
	}
	if n := servertest.Metric(t, base, `crease_bus_lost_total{reason="epoch"}`); n != 1 {
		t.Errorf("crease_bus_lost_total{epoch} = %v", n)
	}
	if n := servertest.Metric(t, base, `crease_resyncs_total{reason="epoch"}`); n != float64(len(clients)) {
		t.Errorf("crease_resyncs_total{epoch} = %v, want %d", n, len(clients))
	}
}

func converge(t *testing.T, clients []*v1client.Client, final client.Snapshot) {
	t.Helper()
	for _, c := range clients {
		servertest.Eventually(t, 10*time.Second, func() error { return c.Converged(final) })
	}
}
