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

// handler returns the publish API on b, or nil without --api-key. For the embedded bus
// it also exports crease_store_publishes_total{result}, the store rules it applied.
func (f *apiFlags) handler(b bus.Bus, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	if e, ok := b.(*bus.Embedded); ok && reg != nil {
		for _, r := range bus.PublishResults {
			c := prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "crease_store_publishes_total",
				Help:        "Deltas published to the store, by the store rule applied: applied, duplicate (a retry), new_epoch, reseeded_empty, reseeded_behind, refused.",
				ConstLabels: prometheus.Labels{"result": string(r)},
			}, func() float64 { return float64(e.PublishResults()[r]) })
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	if len(f.keys) == 0 {
		return nil, nil
	}
	store, ok := b.(publish.Store)
	if !ok {
		return nil, errors.New("--api-key: this bus cannot be read back to resume matches")
	}
	return publish.New(publish.Options{Bus: store, Keys: f.keys, Registerer: reg, Logger: log})
}
