package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"crease/bus"
	"crease/ingest"
)

const ingestUsage = `Replays match files (Cricsheet JSON) onto the Redis bus, and with --listen serves the
publish API (PUT/POST/PATCH /v1/matches/..., see PROTOCOL.md "Publishing (HTTP)"). For
each delivery it stores the snapshot, the seq, the history and its journal and publishes
the delta in one atomic step, plus a commentary event. Without --match and --listen it
replays the real matches shipped in the binary. A stored match resumes exactly where the
store has it (never from the first ball). A file that cannot be read or is refused is
reported and skipped; the command fails only when nothing can be published. While Redis
is unreachable it waits (at start) or pauses (mid-match), and the API answers 503.`

func runIngest(ctx context.Context, args []string) error {
	cmd := newCommand("ingest", ingestUsage)
	r := redisFlags{required: true}
	var lf logFlags
	var files listFlag
	var api apiFlags
	cmd.register(&r, &lf, &api)
	cmd.fs.Var(&files, "match", "Cricsheet JSON file to replay (repeatable)")
	speed := cmd.fs.Float64("speed", 1, "replay speed in deliveries per second per match (0: as fast as possible)")
	loop := cmd.fs.Bool("loop", false, "restart each match when it ends, seq going on")
	sims := cmd.fs.Int("sim", 0, "synthetic matches to replay as well")
	listen := cmd.fs.String("listen", "", "serve the publish API on this address (needs --api-key)")
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
	if (*listen != "") != (len(api.keys) > 0) {
		return errors.New("crease ingest: --listen and --api-key go together")
	}
	log, err := lf.logger(os.Stderr)
	if err != nil {
		return err
	}
	var matches []*ingest.Match
	if len(files) == 0 && *listen == "" {
		if matches, err = ingest.Embedded(); err != nil {
			return err
		}
	}
	var refused []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			var m *ingest.Match
			if m, err = ingest.ReadMatch(filepath.Base(f), data); err == nil {
				matches = append(matches, m)
				continue
			}
		}
		// One bad file never stops the others: refuse it and go on.
		log.Error("match file refused", "file", f, "err", err)
		refused = append(refused, err)
	}
	if len(matches) == 0 && *sims == 0 && *listen == "" {
		return fmt.Errorf("crease ingest: nothing to publish: %w", errors.Join(refused...))
	}
	reg := newRegistry()
	b, err := r.open(log, reg, "")
	if err != nil {
		return fmt.Errorf("crease ingest: %w", err)
	}
	defer b.Close()
	store, ok := b.(bus.Resumer)
	if !ok {
		return errors.New("crease ingest: the bus cannot be read back to resume matches")
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(matches)+*sims+1)
	if *listen != "" {
		h, err := api.handler(b, reg, log)
		if err != nil {
			return fmt.Errorf("crease ingest: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/v1/matches/", h)
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("crease ingest: --listen: %w", err)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
		log.Info("publish API listening", "addr", ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("publish API: %w", err)
			}
		}()
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		}()
	}
	replay := func(id string, run func(ingest.ReplayOptions) error) {
		opts := ingest.ReplayOptions{Speed: *speed, Loop: *loop}
		// Resume exactly where the store has the match (its epoch, seq and the step of
		// the source its journal names). Redis may not be up yet: starting over a stored
		// match would only be refused, so wait until the store answers.
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			st, err := store.Stored(ctx, id)
			if err == nil {
				opts.Resume = &st
				log.Info("resuming match", "match", id, "epoch", st.Epoch, "after_seq", st.Seq)
				break
			}
			if errors.Is(err, bus.ErrUnknownMatch) {
				break
			}
			log.Warn("cannot read the stored match yet; retrying", "match", id, "in", wait, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if err := run(opts); err != nil && ctx.Err() == nil {
			log.Error("match stopped", "match", id, "err", err)
			errs <- fmt.Errorf("match %s: %w", id, err)
		}
	}
	if err := startReplays(ctx, &wg, b, matches, *sims, replay); err != nil {
		return err
	}
	log.Info("replaying", "matches", len(matches), "refused", len(refused), "synthetic", *sims, "speed", *speed, "loop", *loop)
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	// Matches that failed mid-way are an error only when nothing else was published.
	if len(all) > 0 && len(all) == len(matches)+*sims && *listen == "" {
		return errors.Join(all...)
	}
	return nil
}
