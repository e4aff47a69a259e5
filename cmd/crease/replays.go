package main

import (
	"context"
	"sync"

	"crease/bus"
	"crease/ingest"
)

// startReplays starts, each in a goroutine counted by wg, run for every match and for
// sims synthetic matches: run gets the match's id and its replay onto pub with the
// options run chooses (demo and ingest replay alike and differ only in those options and
// in what a stopped replay means).
func startReplays(ctx context.Context, wg *sync.WaitGroup, pub bus.Publisher, matches []*ingest.Match, sims int, run func(id string, replay func(ingest.ReplayOptions) error)) error {
	for _, m := range matches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(m.ID(), func(o ingest.ReplayOptions) error { return ingest.Replay(ctx, pub, m, o) })
		}()
	}
	if sims == 0 {
		return nil
	}
	sim, err := ingest.NewSimulator(ingest.SimOptions{Seed: 1})
	if err != nil {
		return err
	}
	for n := uint64(1); n <= uint64(sims); n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(sim.ID(n), func(o ingest.ReplayOptions) error { return sim.Replay(ctx, pub, n, o) })
		}()
	}
	return nil
}
