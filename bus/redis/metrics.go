package redis

import (
	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
)

// metrics of one Bus: the Redis side only. What a gateway receives (messages, drops,
// losses) is counted once, by the gateway's Sink. They always exist and are registered,
// on a private registry when Options.Registerer is nil.
type metrics struct {
	reconnects    prometheus.Counter
	resubscribes  prometheus.Counter
	subscriptions prometheus.Gauge
	snapshots     *prometheus.CounterVec // result = hit | coalesced | miss
	gets          prometheus.Counter
	publishes     *prometheus.CounterVec // result = bus.PublishResult
	masters       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crease_bus_reconnects_total", Help: "Times the Redis link came back after being down.",
		}),
		resubscribes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crease_bus_resubscribes_total", Help: "Subscribe confirmations after a disconnect or slot migration (each reported as a loss).",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crease_bus_subscriptions", Help: "Matches this gateway is subscribed to on Redis.",
		}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crease_snapshot_requests_total", Help: "Snapshot requests by result: cache hit, coalesced with a running fetch, miss (a Redis GET), behind (the store lost deltas this gateway delivered: 503).",
		}, []string{"result"}),
		gets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crease_redis_gets_total", Help: "Snapshot GETs sent to Redis.",
		}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crease_store_publishes_total", Help: "Deltas this publisher sent to the store, by the store rule applied: applied, duplicate (a retry), new_epoch, reseeded_empty, reseeded_behind, refused.",
		}, []string{"result"}),
		masters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crease_bus_master_changes_total", Help: "Times the Redis master named by Sentinel changed address (a failover), as seen by this process's health checks.",
		}),
	}
	for _, r := range bus.PublishResults {
		m.publishes.WithLabelValues(string(r))
	}
	for _, r := range []string{"hit", "coalesced", "miss", "behind"} {
		m.snapshots.WithLabelValues(r)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	for _, c := range []prometheus.Collector{m.reconnects, m.resubscribes, m.subscriptions, m.snapshots, m.gets, m.publishes, m.masters} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
