package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"crease/bus"
	"crease/ingest"
)

const ingestUsage = `Replays match files (Cricsheet JSON) onto the Redis bus: for each delivery it stores the
snapshot, advances the seq and publishes the delta in one atomic step, plus a commentary
event. Without --match it replays the real matches shipped in the binary. A match whose
snapshot already exists resumes after the stored seq. While Redis is unreachable it waits
(at start) or pauses (mid-match) and goes on when Redis is back; a Redis that lost its
data is re-seeded with each match's next delta.`

func runIngest(ctx context.Context, args []string) error {
	cmd := newCommand("ingest", ingestUsage)
	var r redisFlags
	var lf logFlags
	var files listFlag
	r.register(cmd.fs)
	lf.register(cmd.fs)
	cmd.fs.Var(&files, "match", "Cricsheet JSON file to replay (repeatable)")
	speed := cmd.fs.Float64("speed", 1, "replay speed in deliveries per second per match (0: as fast as possible)")
	loop := cmd.fs.Bool("loop", false, "restart each match when it ends, seq going on")
	sims := cmd.fs.Int("sim", 0, "synthetic matches to replay as well")
	if err := cmd.parse(args); err != nil {
		return err
	}
	if len(r.addrs) == 0 {
		cmd.fs.Usage()
		return errors.New("crease ingest: --redis ADDR is required")
	}
	if *speed < 0 {
		return errors.New("crease ingest: --speed must be ≥ 0")
	}
	log, err := lf.logger(os.Stderr)
	if err != nil {
		return err
	}
	var matches []*ingest.Match
	if len(files) == 0 {
		if matches, err = ingest.Embedded(); err != nil {
			return err
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("crease ingest: %w", err)
		}
		m, err := ingest.ReadMatch(filepath.Base(f), data)
		if err != nil {
			return fmt.Errorf("crease ingest: %w", err)
		}
		matches = append(matches, m)
	}
	b, err := r.open(log, nil, "")
	if err != nil {
		return fmt.Errorf("crease ingest: %w", err)
	}
	defer b.Close()

	var wg sync.WaitGroup
	errs := make(chan error, len(matches)+*sims)
	replay := func(id string, run func(ingest.ReplayOptions) error) {
		defer wg.Done()
		opts := ingest.ReplayOptions{Speed: *speed, Loop: *loop}
		// Resume after what is stored, so a restarted publisher neither conflicts
		// with its own earlier deltas nor sends an older seq.
		// Redis may not be up yet: starting at seq 1 over a stored match would only be
		// refused, so wait until the store answers.
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			snap, err := b.Snapshot(ctx, id)
			if err == nil {
				opts.Epoch, opts.StartSeq = snap.Epoch, snap.Seq+1
				opts.Base = stateOf(snap.Raw)
				log.Info("resuming match", "match", id, "after_seq", snap.Seq)
				break
			}
			if errors.Is(err, bus.ErrUnknownMatch) {
				break
			}
			log.Warn("cannot read the stored snapshot yet; retrying", "match", id, "in", wait, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if err := run(opts); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("match %s: %w", id, err)
		}
	}
	for _, m := range matches {
		wg.Add(1)
		go replay(m.ID(), func(o ingest.ReplayOptions) error { return ingest.Replay(ctx, b, m, o) })
	}
	if *sims > 0 {
		sim, err := ingest.NewSimulator(ingest.SimOptions{Seed: 1})
		if err != nil {
			return err
		}
		for n := 1; n <= *sims; n++ {
			wg.Add(1)
			go replay(sim.ID(uint64(n)), func(o ingest.ReplayOptions) error { return sim.Replay(ctx, b, uint64(n), o) })
		}
	}
	log.Info("replaying", "matches", len(matches), "synthetic", *sims, "speed", *speed, "loop", *loop)
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

// stateOf extracts "state" from a snapshot's raw JSON.
func stateOf(raw []byte) []byte {
	var s struct {
		State json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil
	}
	return s.State
}
