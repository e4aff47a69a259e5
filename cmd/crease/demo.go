package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"crease/bus"
	"crease/ingest"
	"crease/server"
)

const demoUsage = `Runs a gateway on the embedded in-process bus with the three real matches shipped in
the binary (Cricsheet data) replaying in a loop, plus --sim synthetic matches, and prints
the URLs. No Redis needed.`

func runDemo(ctx context.Context, args []string) error {
	cmd := newCommand("demo", demoUsage)
	var g gatewayFlags
	var api apiFlags
	var hist historyFlags
	cmd.register(&g, &api, &hist)
	speed := cmd.fs.Float64("speed", 2, "replay speed in deliveries per second per match (0: as fast as possible)")
	sims := cmd.fs.Int("sim", 1, "synthetic matches to run beside the real ones")
	if err := cmd.parse(args); err != nil {
		return err
	}
	if *speed < 0 {
		return errors.New("crease demo: --speed must be ≥ 0")
	}
	if *sims < 0 {
		return errors.New("crease demo: --sim must be ≥ 0")
	}
	if err := g.validate(); err != nil {
		return fmt.Errorf("crease demo: %w", err)
	}
	log, err := g.log.logger(os.Stderr)
	if err != nil {
		return err
	}
	matches, err := ingest.Embedded()
	if err != nil {
		return fmt.Errorf("crease demo: %w", err)
	}
	ho, err := hist.options()
	if err != nil {
		return fmt.Errorf("crease demo: %w", err)
	}
	b := bus.NewEmbeddedWith(ho)
	reg := newRegistry()
	opts := g.options(log, b, reg)
	srv, err := startGateway(ctx, "demo", opts, api, b, reg, log)
	if err != nil {
		return err
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	ropts := ingest.ReplayOptions{Speed: *speed, Loop: true}
	err = startReplays(rctx, &wg, b, matches, *sims, func(id string, replay func(ingest.ReplayOptions) error) {
		if err := replay(ropts); err != nil && rctx.Err() == nil {
			log.Error("replay stopped", "match", id, "err", err)
		}
	})
	if err != nil {
		return err
	}
	printURLs(srv, matches, log)
	if opts.PublishAPI != nil {
		fmt.Printf("  Publish API:      http://%s/v1/matches/{id} (Authorization: Bearer KEY; see README \"Publishing your own feed\")\n\n", hostFor(srv.HTTPAddr()))
	}
	err = runUntilSignal(ctx, srv, log)
	cancel()
	wg.Wait()
	return err
}

func printURLs(srv *server.Server, matches []*ingest.Match, log *slog.Logger) {
	httpHost := hostFor(srv.HTTPAddr())
	wsHost := hostFor(srv.WSAddr())
	fmt.Printf("\ncrease demo is running.\n\n")
	fmt.Printf("  Scoreboard page:  http://%s/\n", httpHost)
	for _, m := range matches {
		fmt.Printf("    %-10s      http://%s/?match=%s   (%s)\n", m.ID(), httpHost, m.ID(), m.Title())
	}
	fmt.Printf("  Live matches:     http://%s/v1/matches\n", httpHost)
	fmt.Printf("  WebSocket:        ws://%s/ws?match=%s\n", wsHost, matches[0].ID())
	fmt.Printf("  Metrics:          http://%s/metrics\n\n", httpHost)
	fmt.Printf("Ctrl-C drains the gateway and stops.\n\n")
	log.Debug("demo started")
}

// hostFor turns a bound address into one a browser on this machine can open.
func hostFor(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
