package redis

import (
	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
)

// metrics of one Bus. They always exist (the code never checks for nil); they are
// exported only when Options.Registerer is set.
type metrics struct {
	messages      *prometheus.CounterVec // kind = delta | event, delivered to the sink
	invalid       prometheus.Counter
	dropped       *prometheus.CounterVec // reason = overflow | duplicate
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
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crease_bus_messages_total", Help: "Bus messages handed to the gateway, by kind.",
		}, []string{"kind"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crease_bus_invalid_total", Help: "Bus messages dropped because they are not a valid frame of their channel's match.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crease_bus_dropped_total", Help: "Valid bus messages dropped: overflow of the hand-off queue, or a duplicate seq.",
		}, []string{"reason"}),
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
	for _, k := range []string{"delta", "event"} {
		m.messages.WithLabelValues(k)
	}
	for _, r := range []string{"overflow", "duplicate"} {
		m.dropped.WithLabelValues(r)
	}
	for _, r := range bus.PublishResults {
		m.publishes.WithLabelValues(string(r))
	}
	for _, r := range []string{"hit", "coalesced", "miss", "behind"} {
		m.snapshots.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.messages, m.invalid, m.dropped, m.reconnects, m.resubscribes, m.subscriptions, m.snapshots, m.gets, m.publishes, m.masters} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
