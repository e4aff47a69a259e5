// Package servertest starts real crease gateways for tests, nats-server style: a real
// server on free loopback ports, stopped by t.Cleanup.
package servertest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"crease/bus"
	"crease/server"
)

// Run starts a gateway with opts on 127.0.0.1 free ports (unless set), on an embedded
// bus unless opts.Bus is set, and stops it when the test ends.
func Run(t testing.TB, opts server.Options) *server.Server {
	t.Helper()
	if opts.WSAddr == "" {
		opts.WSAddr = "127.0.0.1:0"
	}
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if opts.Bus == nil {
		opts.Bus = bus.NewEmbedded()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Node == "" {
		opts.Node = "test"
	}
	s, err := server.New(opts)
	if err != nil {
		t.Fatalf("servertest: new: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("servertest: start: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// WSURL returns the WebSocket URL of s with an optional query.
func WSURL(s *server.Server, query string) string {
	u := "ws://" + s.WSAddr().String() + server.DefaultWSPath
	if query != "" {
		u += "?" + query
	}
	return u
}

// HTTPURL returns the base HTTP URL of s.
func HTTPURL(s *server.Server) string { return "http://" + s.HTTPAddr().String() }
