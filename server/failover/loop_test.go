package failover_test

import (
	"slices"
	"testing"
	"time"

	"crease/internal/redistest"
)

// TestFailoverLoop: a match replays under many clients while the Sentinel setup fails
// over again and again, in turn: the primary killed with SIGKILL (and restarted as the
// new primary's replica), a SENTINEL FAILOVER with both nodes up, and the primary killed
// after its replica was shut out of replication (a lagging replica promoted, the store
// re-seeded). After each failover every client must hold a state published after it
// (nothing frozen); at the end every client holds the publisher's state with nothing
// lost. Short in `make test` (2 failovers, 200 clients); under CREASE_SOAK=1 (`make
// soak`) a failover every 20 s for 5 minutes under 2,000 clients.
func TestFailoverLoop(t *testing.T) {
	t.Parallel()
	var (
		clients  = pick(200, 2000)
		every    = pick(time.Duration(0), 20*time.Second)
		duration = pick(time.Duration(0), 5*time.Minute)
		minRound = pick(2, 1)
		speed    = pick(10.0, 2.0) // deltas/s: a live match is one every ~30 s
	)
	s := redistest.StartSentinel(t)
	run := startReplay(t, sentinelStore(s), replayOpts{clients: clients, publisher: "pub", speed: speed, reached: 5, within: 60 * time.Second})
	gws, pub, ws, stop := run.gws, run.pub, run.ws, run.stop
	epoch, _ := pub.position()

	kinds := []string{"primary killed", "SENTINEL FAILOVER", "lagging replica promoted"}
	var times []time.Duration
	began := time.Now()
	for round := 0; round < minRound || time.Since(began) < duration; round++ {
		if round > 0 {
			s.WaitReady(t)
		}
		if next := began.Add(time.Duration(round) * every); time.Until(next) > 0 {
			time.Sleep(time.Until(next)) // the loop's pace: one failover per period
		}
		kind := kinds[round%len(kinds)]
		old := s.Master()
		var fault time.Time
		switch kind {
		case "primary killed":
			old.Kill()
			fault = time.Now()
			s.WaitNewMaster(t, old)
		case "SENTINEL FAILOVER":
			fault = time.Now()
			s.Failover(t)
		case "lagging replica promoted":
			// One delta the replica lacks is enough to need a re-seed; a long pause
			// would not be promoted at all (Sentinel skips a replica whose link has
			// been down for more than 10 × down-after).
			s.Replica().PauseReplication(t)
			_, at := pub.position()
			pub.waitPublished(t, at+1, 5*time.Second)
			old.Kill()
			fault = time.Now()
			s.WaitNewMaster(t, old)
		}
		back := time.Now()
		d := converged(t, kind, ws, pub, fault, back)
		times = append(times, d)
		if !old.Alive() {
			old.RestartAsReplicaOf(s.Master())
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("the replay stopped by itself: %v", err)
	}
	final := verifyEnd(t, gws, pub, ws)
	if final.Epoch != epoch {
		t.Fatalf("the epoch changed across %d failovers: %s -> %s", len(times), epoch, final.Epoch)
	}
	followed(t, gws, pub)
	slices.Sort(times)
	t.Logf("%d failovers in %v under %d clients: every client past the failover after %v (min) / %v (median) / %v (max)",
		len(times), time.Since(began).Round(time.Second), clients, times[0].Round(time.Millisecond),
		times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
}
