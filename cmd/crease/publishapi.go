package main

import (
	"errors"
	"flag"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	"crease/publish"
)

// apiFlags are the publish API's flags (demo, serve with the embedded bus, ingest).
type apiFlags struct {
	keys listFlag
}

func (f *apiFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.keys, "api-key", "serve the publish API (PUT/POST/PATCH /v1/matches/...) to requests with Authorization: Bearer KEY (repeatable, or comma-separated)")
}

// handler returns the publish API on b, or nil without --api-key.
func (f *apiFlags) handler(b bus.Bus, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	if len(f.keys) == 0 {
		return nil, nil
	}
	store, ok := b.(publish.Store)
	if !ok {
		return nil, errors.New("--api-key: this bus cannot be read back to resume matches")
	}
	return publish.New(publish.Options{Bus: store, Keys: f.keys, Registerer: reg, Logger: log})
}
