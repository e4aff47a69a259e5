package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// proxy is an in-process toxiproxy on a free loopback port, as server/faults uses it.
type proxy struct{ p *toxiproxy.Proxy }

func newProxy(name, upstream string) (*proxy, error) {
	zerolog.SetGlobalLevel(zerolog.Disabled)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("toxiproxy %s: %w", name, err)
	}
	return &proxy{p}, nil
}

func (p *proxy) addr() string { return p.p.Listen }
func (p *proxy) stop()        { p.p.Stop() }

func (p *proxy) add(name, typ, stream string, attrs map[string]any) error {
	body, _ := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs})
	_, err := p.p.Toxics.AddToxicJson(bytes.NewReader(body))
	return err
}

// both adds the toxic on both streams.
func (p *proxy) both(name, typ string, attrs map[string]any) error {
	if err := p.add(name+"_up", typ, "upstream", attrs); err != nil {
		return err
	}
	return p.add(name+"_down", typ, "downstream", attrs)
}

func (p *proxy) removeBoth(name string) {
	_ = p.p.Toxics.RemoveToxic(context.Background(), name+"_up")
	_ = p.p.Toxics.RemoveToxic(context.Background(), name+"_down")
}

// twoG makes the link ≈50 kbit/s each way with 300-600 ms of latency each way (bandwidth
// first, so that the proxy stops reading and TCP pushes back, as on a phone).
func (p *proxy) twoG() error {
	if err := p.both("bw", "bandwidth", map[string]any{"rate": 6}); err != nil {
		return err
	}
	return p.both("lat", "latency", map[string]any{"latency": 450, "jitter": 150})
}
