package failover_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"crease/bus"
	"crease/internal/redistest"
)

// resumeFrom is what `crease ingest` does at start: resume the stored match, or start
// it (a new epoch) when the store has none.
func resumeFrom(t testing.TB, p *publisher, match string) *bus.Stored {
	t.Helper()
	st, err := p.Stored(context.Background(), match)
	switch {
	case errors.Is(err, bus.ErrUnknownMatch):
		return nil
	case err != nil:
		t.Fatalf("reading the stored match: %v", err)
	}
	return &st
}

// firstPublisher starts a standalone Redis and replays a real match through publisher
// pub1, which resumes or starts it as `crease ingest` does, until every client holds
// seq 25, then stops it: the publisher that the tests below lose.
func firstPublisher(t testing.TB) (*redistest.Server, store, *replayed) {
	t.Helper()
	r := redistest.Start(t)
	st := standaloneStore(r)
	run := startReplay(t, st, replayOpts{clients: pick(10, 200), publisher: "pub1", speed: 40, resume: true, reached: 25, within: 20 * time.Second})
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	return r, st, run
}

// TestStoreFlushedPublisherWithoutMemory: Redis loses everything (FLUSHALL) while the
// publisher is down, and the publisher comes back without memory: the store has
// nothing to resume, so it starts the match over in a new epoch, at seqs below those the
// clients hold. Each gateway sends `resync` reason epoch before the new epoch's first
// delta (the Checker flags a delta of a new epoch without it), serves 503 for the
// snapshot until the new epoch has one, and every client ends with the new publisher's
// state.
func TestStoreFlushedPublisherWithoutMemory(t *testing.T) {
	t.Parallel()
	r, st, run := firstPublisher(t)
	gws, m, ws, first := run.gws, run.m, run.ws, run.pub
	_ = first.Close() // the publisher is down (else it would re-seed the flushed store)
	oldEpoch, oldSeq := first.position()
	waitReached(t, ws, oldEpoch, oldSeq, 10*time.Second)

	if out, err := r.Cli("FLUSHALL"); err != nil {
		t.Fatalf("FLUSHALL: %v %s", err, out)
	}
	fault := time.Now()
	second := newPublisher(t, st, "pub2")
	if resume := resumeFrom(t, second, m.ID()); resume != nil {
		t.Fatalf("the flushed store still holds %s:%d", resume.Epoch, resume.Seq)
	}
	stop := second.replay(t, m, 40, nil)
	converged(t, "store flushed, publisher without memory", ws, second, fault, fault)
	second.waitPublished(t, 10, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	final := verifyEnd(t, gws, second, ws)
	if final.Epoch == oldEpoch || final.Seq >= oldSeq {
		t.Fatalf("the new stream is at %s:%d, want another epoch than %s and a seq below %d", final.Epoch, final.Seq, oldEpoch, oldSeq)
	}
	if n := counter(t, second.reg, "crease_store_publishes_total", "result", "new_epoch"); n != 1 {
		t.Errorf("crease_store_publishes_total{result=new_epoch} = %v, want 1", n)
	}
	for _, g := range gws {
		if n := counter(t, g.reg, "crease_resyncs_total", "reason", "epoch"); n < 1 {
			t.Errorf("%s: crease_resyncs_total{reason=epoch} = %v, want ≥ 1", g.name, n)
		}
	}
	for _, w := range ws {
		if s := w.chk.Stats(m.ID()); s.Resyncs < 1 {
			t.Errorf("%s got no resync across the new epoch", w.name)
		}
	}
}

// TestPublisherRestartedStoreIntact: the publisher stops mid-match (its process gone)
// and a new one, without memory, finds the match in the store and resumes it: same
// epoch, the next seq, the next ball (the stored journal), never a new epoch nor a
// re-seed; clients see one unbroken stream.
func TestPublisherRestartedStoreIntact(t *testing.T) {
	t.Parallel()
	_, st, run := firstPublisher(t)
	gws, m, ws, first := run.gws, run.m, run.ws, run.pub
	_ = first.Close() // the process is gone
	epoch, seq := first.position()
	fault := time.Now()

	second := newPublisher(t, st, "pub2")
	resume := resumeFrom(t, second, m.ID())
	if resume == nil || resume.Epoch != epoch || resume.Seq != seq {
		t.Fatalf("the store holds %+v, want %s:%d", resume, epoch, seq)
	}
	stop := second.replay(t, m, 40, resume)
	converged(t, "publisher restarted, store intact", ws, second, fault, fault)
	second.waitPublished(t, seq+10, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if a, _ := second.firstAckAfter(fault); a.epoch != epoch || a.seq != seq+1 {
		t.Fatalf("the restarted publisher's first delta is %s:%d, want %s:%d", a.epoch, a.seq, epoch, seq+1)
	}
	final := verifyEnd(t, gws, second, ws)
	if final.Epoch != epoch {
		t.Fatalf("epoch changed across the restart: %s -> %s", epoch, final.Epoch)
	}
	if got := second.storeResults(t); got != fmt.Sprintf("applied=%d", final.Seq-seq) {
		t.Errorf("the restarted publisher's store results: %s, want only applied=%d", got, final.Seq-seq)
	}
}
