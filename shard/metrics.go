package shard

import (
	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
)

// LoopMetrics are the collectors one shard writes, resolved to its loop label once so
// that the hot path does no label lookups.
type LoopMetrics struct {
	Connections   prometheus.Gauge
	Pending       prometheus.Gauge
	LoopLag       prometheus.Observer
	DispatchDelay prometheus.Observer
	Fanout        prometheus.Observer
	Subscriptions prometheus.Gauge
	Cuts          prometheus.Counter
	Delivered     *prometheus.CounterVec // prio
	Dropped       *prometheus.CounterVec // prio, reason
	Resyncs       *prometheus.CounterVec // reason
	Recoveries    *prometheus.CounterVec // result: subscribes with `since` (RecoveryResults)
	Replayed      prometheus.Counter     // deltas queued from history answers
	CatchUps      *prometheus.CounterVec // source (queue, replay), result (CatchUpResults)

	deliveredBy [4]prometheus.Counter
}

// NopLoopMetrics returns collectors registered nowhere, for tests and tools.
func NopLoopMetrics() *LoopMetrics {
	m := &LoopMetrics{
		Connections:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "c"}),
		Pending:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "p"}),
		LoopLag:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "l"}),
		DispatchDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"}),
		Fanout:        prometheus.NewHistogram(prometheus.HistogramOpts{Name: "f"}),
		Subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s"}),
		Cuts:          prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}),
		Delivered:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dl"}, []string{"prio"}),
		Dropped:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dr"}, []string{"prio", "reason"}),
		Resyncs:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"reason"}),
		Recoveries:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rc"}, []string{"result"}),
		Replayed:      prometheus.NewCounter(prometheus.CounterOpts{Name: "rp"}),
		CatchUps:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cu"}, []string{"source", "result"}),
	}
	m.Resolve()
	return m
}

// Resolve pre-binds the per-priority delivered counters; call it once after filling m.
func (m *LoopMetrics) Resolve() {
	for _, p := range []bus.Prio{bus.PrioHigh, bus.PrioNormal, bus.PrioLow} {
		m.deliveredBy[p] = m.Delivered.WithLabelValues(p.String())
	}
	m.deliveredBy[0] = m.Delivered.WithLabelValues("control")
}

func (m *LoopMetrics) delivered(p bus.Prio, n int64) {
	if int(p) < len(m.deliveredBy) && m.deliveredBy[p] != nil {
		m.deliveredBy[p].Add(float64(n))
	}
}

func (m *LoopMetrics) dropped(p bus.Prio, reason string) { m.droppedN(p, reason, 1) }

func (m *LoopMetrics) droppedN(p bus.Prio, reason string, n int) {
	if n > 0 {
		m.Dropped.WithLabelValues(p.String(), reason).Add(float64(n))
	}
}

func (m *LoopMetrics) resync(reason bus.ResyncReason) {
	m.Resyncs.WithLabelValues(string(reason)).Inc()
}

func (m *LoopMetrics) recovery(result string) {
	m.Recoveries.WithLabelValues(result).Inc()
}

func (m *LoopMetrics) catchUp(source, result string) {
	m.CatchUps.WithLabelValues(source, result).Inc()
}
