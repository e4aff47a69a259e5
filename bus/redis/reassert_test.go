package redis

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
)

// evalshaCalls is how many scripts Redis has run (INFO commandstats).
func evalshaCalls(t testing.TB, run func(...string) (string, error)) int {
	t.Helper()
	out, err := run("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_evalsha:calls=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestReassertRestoresALostLastDelta: a publisher whose match went idle runs its last
// delta again every Options.Reassert. While the store holds it nothing is written or
// published; once the store has lost it (here FLUSHALL: a failover to a replica that
// lacked the last write looks the same), the delta is back in the store and on the
// channel, so the gateway's 503 "store behind" ends without a next delta. A store that
// another publisher moved on is left alone.
func TestReassertRestoresALostLastDelta(t *testing.T) {
	t.Parallel()
	srv, g, sink := newSubscribedBus(t)
	o := testOptions(srv.Addr())
	o.Reassert = 100 * time.Millisecond
	logs := &logRecorder{}
	o.Logger = slog.New(logs)
	p := newClosingBus(t, o)
	publishes := func(r bus.PublishResult) float64 { return value(p.m.publishes.WithLabelValues(string(r))) }

	publishSeqs(t, p, 1, 3, m1Delta)
	eventually(t, 5*time.Second, "seq 3 delivered", func() bool { return len(sink.delivered()) == 3 })
	// Re-runs against a store that holds the delta: nothing published, nothing counted.
	base := evalshaCalls(t, srv.Cli)
	eventually(t, 10*time.Second, "two re-runs", func() bool { return evalshaCalls(t, srv.Cli) >= base+2 })
	if n := len(sink.delivered()); n != 3 {
		t.Fatalf("%d deltas delivered after re-runs against a store that holds the last, want 3", n)
	}
	if n := publishes(bus.ResultDuplicate); n != 0 {
		t.Fatalf("re-runs counted as %v duplicates; they are not publishes", n)
	}

	if _, err := srv.Cli("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the lost delta back in the store", func() bool {
		s, err := g.Snapshot(t.Context(), "m1")
		return err == nil && s.Seq == 3 && s.Epoch == testEpoch
	})
	// Counted and logged once the script's answer is back, just after the store shows it.
	eventually(t, 10*time.Second, "the restore counted and logged", func() bool {
		return publishes(bus.ResultReseededEmpty) == 1 && logs.has("redis had lost the publisher's last delta of the match: published it again")
	})
	if n := len(sink.delivered()); n != 3 {
		t.Fatalf("%d deltas delivered: the gateway must drop the re-published one as a duplicate", n)
	}

	// Another publisher moves the match on: the first one stops re-asserting it.
	other := testOptions(srv.Addr())
	other.Registerer = prometheus.NewRegistry()
	q := newClosingBus(t, other)
	if err := q.PublishDelta(t.Context(), m1Delta(4)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the match dropped from the re-runs", func() bool {
		p.pub.mu.Lock()
		defer p.pub.mu.Unlock()
		return len(p.pub.matches) == 0
	})
	if !logs.has("not re-asserting the match: the store moved past this publisher") {
		t.Fatal("giving up the match was not logged")
	}
	s, err := g.Snapshot(t.Context(), "m1")
	if err != nil || s.Seq != 4 {
		t.Fatal(fmt.Errorf("snapshot %+v %v, want seq 4", s, err))
	}
}
