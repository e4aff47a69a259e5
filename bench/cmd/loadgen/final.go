package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"crease/bench/internal/report"
)

// The final check, asked for with SIGUSR2 once the publisher has stopped: slow readers
// catch up, the final snapshot is fetched (with --snapshot-url), and from then on every
// progress line says how many open subscriptions hold the final state. The orchestrator
// polls until all do (or gives up) and then stops the process.

// finalFetchAttempts bounds the attempts to fetch the final snapshot (they are spaced by
// finalFetchWait).
const (
	finalFetchAttempts = 50
	finalFetchWait     = 200 * time.Millisecond
)

func (lg *loadgen) startFinal() {
	lg.catchup.Store(true)
	for _, w := range lg.workers {
		w.wake()
	}
	if lg.snaps == nil || !lg.finalDone.CompareAndSwap(false, true) {
		return
	}
	match := lg.cfg.matches[0]
	go func() {
		for i := 0; i < finalFetchAttempts && !lg.stopping.Load(); i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s, err := lg.snaps.fetch(ctx, match)
			cancel()
			if err == nil {
				lg.finalMu.Lock()
				lg.final = &s
				lg.finalMu.Unlock()
				for _, w := range lg.workers {
					w.wake()
				}
				return
			}
			fmt.Fprintf(os.Stderr, "loadgen %d: final snapshot: %v\n", os.Getpid(), err)
			time.Sleep(finalFetchWait)
		}
	}()
}

// finalKey is the final snapshot's seq, once fetched.
func (lg *loadgen) finalKey() (seqKey, bool) {
	if !lg.finalDone.Load() {
		return seqKey{}, false
	}
	lg.finalMu.Lock()
	defer lg.finalMu.Unlock()
	if lg.final == nil {
		return seqKey{}, false
	}
	return seqKey{lg.final.epoch, lg.final.seq}, true
}

// chainReport sums the workers' counts of the check, and the final verdict.
func (lg *loadgen) chainReport() *report.Chain {
	ch := &report.Chain{Snapshots: lg.snaps.ok.Load(), SnapshotErrors: lg.snaps.errs.Load()}
	for _, w := range lg.workers {
		ch.Divergent += w.chain.divergent.Load()
		ch.SnapshotMismatch += w.chain.mismatch.Load()
		ch.Refetches += w.chain.refetches.Load()
		ch.GaveUp += w.chain.gaveUp.Load()
	}
	lg.refsMu.Lock()
	refs := make([]*matchRef, 0, len(lg.refs))
	for _, r := range lg.refs {
		refs = append(refs, r)
	}
	lg.refsMu.Unlock()
	for _, r := range refs {
		a, b := r.counts()
		ch.Applied += a
		ch.BadPatches += b
	}
	fk, ok := lg.finalKey()
	if !ok {
		return ch
	}
	ch.Final, ch.FinalSeq = true, fk.seq
	lg.finalMu.Lock()
	want := lg.final.hash
	lg.finalMu.Unlock()
	if h, known := lg.ref(lg.cfg.matches[0]).stateAt(fk); known {
		ch.StateOK = h == want
	} else {
		ch.StateUnknown = true
	}
	for _, w := range lg.workers {
		ch.Equal += w.chain.equal.Load()
		ch.Behind += w.chain.behind.Load()
		ch.Waiting += w.chain.waiting.Load()
		ch.Tainted += w.chain.tainted.Load()
	}
	return ch
}
