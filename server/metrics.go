package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	"crease/shard"
	"crease/wire"
)

// metrics are every collector of a gateway, registered on the Registerer given in.
type metrics struct {
	connections   *prometheus.GaugeVec
	loopLag       *prometheus.HistogramVec
	dispatchDelay *prometheus.HistogramVec
	fanout        prometheus.Histogram
	busLatency    prometheus.Histogram
	pending       *prometheus.GaugeVec
	subscriptions *prometheus.GaugeVec
	handshakes    *prometheus.CounterVec
	handshakesOK  prometheus.Counter // handshakes{result="ok"}, resolved once
	disconnects   *prometheus.CounterVec
	delivered     *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	resyncs       *prometheus.CounterVec
	recoveries    *prometheus.CounterVec
	replayed      prometheus.Counter
	catchUps      *prometheus.CounterVec
	cuts          prometheus.Counter
	busMessages   *prometheus.CounterVec
	busInvalid    prometheus.Counter
	busDropped    *prometheus.CounterVec
	busLost       *prometheus.CounterVec
	acceptErrors  *prometheus.CounterVec
	clientErrors  *prometheus.CounterVec
	draining      prometheus.Gauge
}

// lagBuckets resolve the 2 ms loop-lag target and still show seconds-long stalls.
var lagBuckets = []float64{.00005, .0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// fanoutBuckets cover one floor pass over 15,000 sockets (~60 ms here) with room on both sides.
var fanoutBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .075, .1, .15, .2, .3, .5, 1, 2.5, 5}

// busLatencyBuckets resolve a sub-millisecond Redis hop and the 100 ms "publish to the
// last gateway" target.
var busLatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .075, .1, .15, .25, .5, 1, 2.5}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections:   gaugeVec("crease_connections", "Open WebSocket connections per event loop.", "loop"),
		loopLag:       histogramVec("crease_loop_lag_seconds", "Delay of each event loop behind its work: enqueue-to-run delay of a probe task sent every tick.", lagBuckets, "loop"),
		dispatchDelay: histogramVec("crease_dispatch_delay_seconds", "Delay from a bus message posted to a loop until the loop takes it.", lagBuckets, "loop"),
		fanout:        histogram("crease_fanout_latency_seconds", "From the publisher's ts to the frame handed to the sockets of a loop.", fanoutBuckets),
		busLatency:    histogram("crease_bus_latency_seconds", "From the publisher's ts to the bus message received by this gateway (before any interest check); a ts ahead of this host's clock counts as 0.", busLatencyBuckets),
		pending:       gaugeVec("crease_pending_bytes", "Bytes queued for connections (crease's lanes and gnet's outbound buffers of blocked connections) per loop.", "loop"),
		subscriptions: gaugeVec("crease_subscriptions", "Subscriptions (connection x match) per loop.", "loop"),
		handshakes:    counterVec("crease_handshakes_total", "WebSocket handshakes by result.", "result"),
		disconnects:   counterVec("crease_disconnects_total", "Ended connections by close reason.", "reason"),
		delivered:     counterVec("crease_delivered_total", "Frames handed to sockets by priority (control: hello, subscribed, resync, pings...).", "prio"),
		dropped:       counterVec("crease_dropped_total", "Frames not delivered by priority and reason.", "prio", "reason"),
		resyncs:       counterVec("crease_resyncs_total", "Resync frames queued by reason.", "reason"),
		recoveries:    counterVec("crease_recoveries_total", "Subscribes with since, by result: recovered (subscribed recovered:true and the missed deltas), or why not (unavailable, rate_limited, error, timeout, disabled, invalid).", "result"),
		replayed:      counter("crease_replayed_deltas_total", "Deltas queued from history for subscribes with since."),
		catchUps:      counterVec("crease_catchups_total", "Catch-up deltas for connections with ?catchup=1, by source (queue: deltas queued for a slow connection; replay: a history replay) and result: composed into one delta with from, or why not (inexact, too_large, over_budget, broken), when the queue's deltas get resync instead and a replay's go as they are.", "source", "result"),
		cuts:          counter("crease_slow_consumer_cuts_total", "Connections closed with 4008 after their socket stayed full past the cut limit."),
		busMessages:   counterVec("crease_bus_messages_total", "Valid bus messages handed to the gateway (each once, whether or not it has subscribers of the match), by kind.", "kind"),
		busInvalid:    counter("crease_bus_invalid_total", "Bus messages dropped because they are not a valid delta or event frame of their channel's match."),
		busDropped:    counterVec("crease_bus_dropped_total", "Valid bus messages dropped by reason: duplicate (a seq already delivered), old_epoch (a delta of an epoch the stream has left), overflow (the bus's hand-off queue was full; a resync follows).", "reason"),
		busLost:       counterVec("crease_bus_lost_total", "Bus notices that messages of a match may have been lost, or that its stream started a new epoch (each a resync to its subscribers here), by reason.", "reason"),
		acceptErrors:  counterVec("crease_accept_errors_total", "accept(2) failures by errno.", "errno"),
		clientErrors:  counterVec("crease_client_errors_total", "error frames sent to clients by code.", "code"),
		draining:      gauge("crease_draining", "1 while the gateway drains."),
	}
	for _, c := range []prometheus.Collector{m.connections, m.loopLag, m.dispatchDelay, m.fanout, m.busLatency, m.pending,
		m.subscriptions, m.handshakes, m.disconnects, m.delivered, m.dropped, m.resyncs, m.recoveries, m.replayed, m.catchUps, m.cuts,
		m.busMessages, m.busInvalid, m.busDropped, m.busLost, m.acceptErrors, m.clientErrors, m.draining} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range wire.CloseReasons() {
		m.disconnects.WithLabelValues(r.String())
	}
	for _, k := range []string{"delta", "event"} {
		m.busMessages.WithLabelValues(k)
	}
	// Series a dashboard or an alert rates over exist from the start at 0: a counter
	// vector without children exports nothing, and rate() of an absent series is no
	// data rather than 0.
	for _, r := range []string{"ok", "overloaded", "over_capacity", "draining"} {
		m.handshakes.WithLabelValues(r)
	}
	m.handshakesOK = m.handshakes.WithLabelValues("ok")
	for _, r := range bus.ResyncReasons {
		m.resyncs.WithLabelValues(string(r))
	}
	for _, r := range []bus.ResyncReason{bus.ReasonGap, bus.ReasonBus, bus.ReasonEpoch} {
		m.busLost.WithLabelValues(string(r))
	}
	for _, r := range []bus.DropReason{bus.DropDuplicate, bus.DropOldEpoch, bus.DropOverflow} {
		m.busDropped.WithLabelValues(string(r))
	}
	for _, p := range []bus.Prio{bus.PrioHigh, bus.PrioNormal, bus.PrioLow} {
		for _, r := range []string{"budget", "shed", "inbox_full"} {
			m.dropped.WithLabelValues(p.String(), r)
		}
	}
	for _, r := range shard.RecoveryResults {
		m.recoveries.WithLabelValues(r)
	}
	for _, src := range []string{"queue", "replay"} {
		for _, r := range shard.CatchUpResults {
			m.catchUps.WithLabelValues(src, r)
		}
	}
	for _, e := range []string{"EMFILE", "ENFILE"} {
		m.acceptErrors.WithLabelValues(e)
	}
	return m, nil
}

// The constructors below spell each collector of newMetrics as one line: a name, its
// help, then its buckets (histograms) and labels (vectors).

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
}

func (m *metrics) loop(idx int) *shard.LoopMetrics {
	l := strconv.Itoa(idx)
	lm := &shard.LoopMetrics{
		Connections:   m.connections.WithLabelValues(l),
		Pending:       m.pending.WithLabelValues(l),
		LoopLag:       m.loopLag.WithLabelValues(l),
		DispatchDelay: m.dispatchDelay.WithLabelValues(l),
		Fanout:        m.fanout,
		Subscriptions: m.subscriptions.WithLabelValues(l),
		Cuts:          m.cuts,
		Delivered:     m.delivered,
		Dropped:       m.dropped,
		Resyncs:       m.resyncs,
		Recoveries:    m.recoveries,
		Replayed:      m.replayed,
		CatchUps:      m.catchUps,
	}
	lm.Resolve()
	return lm
}

// observeBusLatency records how long a bus message took from its publisher (ts, Unix
// µs) to this gateway; the Sink calls it once per message delivered. A publisher clock
// ahead of ours is clamped to 0 rather than dropped, so that the count stays the number
// of messages received.
func (m *metrics) observeBusLatency(ts int64, now time.Time) {
	m.busLatency.Observe(max(float64(now.UnixMicro()-ts), 0) / 1e6)
}
