package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	"crease/shard"
)

// Defaults of RecoveryOptions.
const (
	DefaultReplayRate    = 100
	DefaultHistoryReads  = 4
	DefaultHistoryWait   = 2 * time.Second
	DefaultKeptDeltas    = 300
	DefaultKeptBytes     = 256 << 10
	DefaultKeptIdle      = time.Minute
	DefaultFeedWait      = 2 * time.Second
	maxQueuedReads       = 1024
	recoveryTickInterval = 250 * time.Millisecond
)

// ErrRecovery is returned by New for RecoveryOptions out of range.
var ErrRecovery = errors.New("server: recovery options out of range")

// RecoveryOptions configures history replay (PROTOCOL.md `since`). Zero fields take the
// defaults.
type RecoveryOptions struct {
	// Disabled answers every subscribe with `since` `recovered:false` at once.
	Disabled bool
	// ReplayRate bounds the history reads per second (a token bucket with a burst of
	// ReplayBurst); the subscribes waiting for a read over it are answered
	// `recovered:false`. Answers from the deltas the gateway keeps cost no read.
	// Default DefaultReplayRate (100); ReplayBurst defaults to the rate.
	ReplayRate  float64
	ReplayBurst int
	// Reads is how many history reads may be in flight at once, over all matches.
	// Default DefaultHistoryReads (4).
	Reads int
	// ReadTimeout bounds one history read; a read that fails or times out answers its
	// subscribes `recovered:false`. Default DefaultHistoryWait (2s).
	ReadTimeout time.Duration
	// KeptDeltas and KeptBytes bound what the gateway keeps per match after a read:
	// the read's deltas and every live delta since, so that the next subscribes with
	// `since` of the match need no read. Defaults DefaultKeptDeltas (300) and
	// DefaultKeptBytes (256 KiB).
	KeptDeltas int
	KeptBytes  int
	// KeptIdle drops a match's kept deltas once no subscribe with `since` used them for
	// this long. Default DefaultKeptIdle (1 minute).
	KeptIdle time.Duration
	// FeedWait: a bus that confirms its subscriptions (the Redis bus, whose
	// confirmation reports Lost) is not read for a match it was just asked for until the
	// confirmation came, or for this long; deltas published in between would reach
	// neither the read nor the feed. Default DefaultFeedWait (2s).
	FeedWait time.Duration
}

func (o RecoveryOptions) withDefaults() (RecoveryOptions, error) {
	if o.ReplayRate == 0 {
		o.ReplayRate = DefaultReplayRate
	}
	if o.ReplayBurst == 0 {
		o.ReplayBurst = max(1, int(o.ReplayRate))
	}
	if o.Reads == 0 {
		o.Reads = DefaultHistoryReads
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = DefaultHistoryWait
	}
	if o.KeptDeltas == 0 {
		o.KeptDeltas = DefaultKeptDeltas
	}
	if o.KeptBytes == 0 {
		o.KeptBytes = DefaultKeptBytes
	}
	if o.KeptIdle == 0 {
		o.KeptIdle = DefaultKeptIdle
	}
	if o.FeedWait == 0 {
		o.FeedWait = DefaultFeedWait
	}
	if o.ReplayRate < 0 || o.ReplayBurst < 1 || o.Reads < 1 || o.Reads > 256 || o.ReadTimeout < 0 ||
		o.KeptDeltas < 0 || o.KeptBytes < 0 || o.KeptIdle < 0 || o.FeedWait < 0 {
		return o, fmt.Errorf("%w: %+v", ErrRecovery, o)
	}
	return o, nil
}

// feedConfirmer is implemented by a bus whose new subscriptions start with a Sink.Lost of
// the match once they are live (the Redis bus: the subscription's confirmation).
type feedConfirmer interface{ ConfirmsSubscriptions() bool }

// recoverer is the gateway's history service (shard.History): the shards ask it for the
// deltas after a client's position, and it answers from the deltas it keeps of the match
// or reads the match's history, one read per match at a time from the lowest position
// asked, shared by every subscribe waiting for it, whatever its loop.
//
// What it keeps of a match is a run of deltas ending at the last one the dispatcher
// handed to the loops: a read's deltas joined to every live delta delivered since the
// read began (a delta delivered before was stored before, so the read has it). While no
// loss was reported, that run is current, and an answer made from it under mu covers
// every delta posted to any loop before it, while every later delta is posted after the
// answer: the shard's inbox keeps that order (shard.HistoryAnswer). A loss drops it all.
//
// Goroutines: Request runs on the loops; delivered, lost and interest on the bus's and
// the loops' (through the dispatcher); tick on the ticker; the reads on Reads workers.
// All state is under mu, which is held while posting answers (never while reading).
type recoverer struct {
	s       *Server
	opts    RecoveryOptions
	hist    bus.History
	confirm bool
	rate    *admission
	reads   chan *histRead
	quit    chan struct{}
	wg      sync.WaitGroup
	readsBy *prometheus.CounterVec // crease_history_reads_total{result}

	mu       sync.Mutex
	matches  map[string]*keptMatch
	nextTick time.Time
}

// keptMatch is what the recoverer holds of one match the gateway follows.
type keptMatch struct {
	name   string
	live   bool      // the bus's feed is live: a delivery or a loss since interest began, or no confirmation to wait for
	liveBy time.Time // reads stop waiting for the feed then

	kept   bool // frames hold the deltas first .. first+len-1 of epoch, the last the last delivered
	epoch  string
	first  uint64
	frames []*shard.Frame // never written below len once handed out: answers share it
	bytes  int
	used   time.Time

	read     *histRead      // in flight
	rec      []*shard.Frame // live deltas delivered since read began
	recBytes int
	recHole  bool

	waiting []shard.HistoryRequest
}

func (m *keptMatch) last() uint64 { return m.first + uint64(len(m.frames)) - 1 }

func (m *keptMatch) drop() {
	m.kept, m.epoch, m.first, m.frames, m.bytes = false, "", 0, nil, 0
}

// trim drops the oldest kept deltas over the bounds; the position stays known.
func (m *keptMatch) trim(o RecoveryOptions) {
	n := 0
	for n < len(m.frames) && (len(m.frames)-n > o.KeptDeltas || m.bytes > o.KeptBytes) {
		m.bytes -= len(m.frames[n].Bytes)
		n++
	}
	if n > 0 {
		m.frames = m.frames[n:]
		m.first += uint64(n)
	}
}

type histRead struct {
	m     *keptMatch
	epoch string
	after uint64
	stale bool // a loss or an interest change came while it was out
}

func newRecoverer(s *Server, reg prometheus.Registerer) (*recoverer, error) {
	o := s.opts.Recovery
	r := &recoverer{s: s, opts: o, hist: s.opts.Bus, rate: newAdmission(o.ReplayRate, o.ReplayBurst),
		reads: make(chan *histRead, maxQueuedReads), quit: make(chan struct{}), matches: make(map[string]*keptMatch),
		readsBy: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "crease_history_reads_total",
			Help: "History reads for subscribes with since, by result (ok, unavailable, error, discarded: a loss came while it was out, busy: too many queued)."}, []string{"result"}),
	}
	if fc, ok := s.opts.Bus.(feedConfirmer); ok {
		r.confirm = fc.ConfirmsSubscriptions()
	}
	if err := reg.Register(r.readsBy); err != nil {
		return nil, err
	}
	for _, res := range []string{"ok", "unavailable", "error", "discarded", "busy"} {
		r.readsBy.WithLabelValues(res)
	}
	return r, nil
}

func (r *recoverer) start() {
	if r == nil {
		return
	}
	for range r.opts.Reads {
		r.wg.Add(1)
		go r.work()
	}
}

func (r *recoverer) stop() {
	if r == nil {
		return
	}
	close(r.quit)
	r.wg.Wait()
}

// interest follows the gateway's interest in match (the dispatcher, under its lock): a
// match followed anew starts with nothing kept.
func (r *recoverer) interest(match string, on bool) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.matches[match]; old != nil && old.read != nil {
		old.read.stale = true
	}
	if !on {
		delete(r.matches, match)
		return
	}
	now := time.Now()
	r.matches[match] = &keptMatch{name: match, live: !r.confirm, liveBy: now.Add(r.opts.FeedWait), used: now}
}

// delivered extends what is kept of a match by a delta the dispatcher is about to post;
// false when the match is not followed. The dispatcher reads the loops' interest after
// it: a loop that asked for a replay before this call gets an answer holding f; one that
// asks after gets f posted after its answer, because its interest was declared before it
// asked.
func (r *recoverer) delivered(msg bus.Message, f *shard.Frame) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.matches[msg.Match]
	if m == nil {
		return false
	}
	if !m.live {
		m.live = true
		r.readLocked(m)
	}
	if m.kept {
		switch last := m.last(); {
		case msg.Epoch != "" && msg.Epoch != m.epoch:
			m.drop() // a new stream (its Lost came first: this does not happen)
		case f.Seq == last+1:
			m.frames = append(m.frames, f)
			m.bytes += len(f.Bytes)
			m.trim(r.opts)
		case f.Seq <= last:
			// A read saw it first.
		default:
			m.drop() // a hole without a loss (the Tracker reports one first)
		}
	}
	if m.read != nil && !m.recHole {
		if n := len(m.rec); n > 0 && f.Seq != m.rec[n-1].Seq+1 {
			m.recHole = true
			return true
		}
		m.rec = append(m.rec, f)
		m.recBytes += len(f.Bytes)
		if len(m.rec) > r.opts.KeptDeltas || m.recBytes > r.opts.KeptBytes {
			m.recBytes -= len(m.rec[0].Bytes)
			m.rec = m.rec[1:]
		}
	}
	return true
}

// lost drops what is kept of match: the feed had a hole.
func (r *recoverer) lost(match string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.matches[match]
	if m == nil {
		return
	}
	m.live = true // a confirmation reports a loss too
	m.drop()
	if m.read != nil {
		m.read.stale = true
		m.read = nil
	}
	m.rec, m.recBytes, m.recHole = nil, 0, false
	// The loops ask again for every subscribe still waiting (shard.noteLost).
	m.waiting = nil
}

// Request implements shard.History. It runs on a loop.
func (r *recoverer) Request(req shard.HistoryRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.matches[req.Match]
	if m == nil {
		// Not followed: the loop declares interest before it asks, so only a request
		// racing the last subscriber's leaving lands here.
		r.answerLocked(req, &shard.HistoryAnswer{Reason: shard.RecoveryUnavailable})
		return
	}
	m.used = time.Now()
	if r.fromKeptLocked(m, req) {
		return
	}
	m.waiting = append(m.waiting, req)
	r.readLocked(m)
}

// answerLocked posts a to the loop of req.
func (r *recoverer) answerLocked(req shard.HistoryRequest, a *shard.HistoryAnswer) {
	a.ID, a.Match = req.ID, req.Match
	if sh := r.s.shards[req.Shard].Load(); sh != nil {
		sh.PostHistory(a)
	}
}

// fromKeptLocked answers req from the kept deltas if it can.
func (r *recoverer) fromKeptLocked(m *keptMatch, req shard.HistoryRequest) bool {
	if !m.kept {
		return false
	}
	if req.Since.Epoch != m.epoch {
		// The stream is at another epoch: the client's position cannot be recovered.
		r.answerLocked(req, &shard.HistoryAnswer{Reason: shard.RecoveryUnavailable})
		return true
	}
	last := m.last()
	if req.Since.Seq+1 < m.first || req.Since.Seq > last {
		return false // older than what is kept, or ahead of the feed: the store may know
	}
	frames := m.frames[req.Since.Seq+1-m.first:]
	r.answerLocked(req, &shard.HistoryAnswer{OK: true, Frames: frames[:len(frames):len(frames)], Last: last})
	return true
}

// failLocked answers the waiting requests for which drop is true.
func (r *recoverer) failLocked(m *keptMatch, reason string, drop func(shard.HistoryRequest) bool) {
	keep := m.waiting[:0]
	for _, req := range m.waiting {
		if drop(req) {
			r.answerLocked(req, &shard.HistoryAnswer{Reason: reason})
		} else {
			keep = append(keep, req)
		}
	}
	clear(m.waiting[len(keep):])
	m.waiting = keep
}

// readLocked starts a read for m's waiting requests, if none is out: of the first one's
// epoch, from the lowest position of that epoch asked.
func (r *recoverer) readLocked(m *keptMatch) {
	if m.read != nil || len(m.waiting) == 0 || !m.live {
		return
	}
	epoch := m.waiting[0].Since.Epoch
	after := m.waiting[0].Since.Seq
	for _, req := range m.waiting {
		if req.Since.Epoch == epoch {
			after = min(after, req.Since.Seq)
		}
	}
	all := func(shard.HistoryRequest) bool { return true }
	if !r.rate.allow() {
		r.failLocked(m, shard.RecoveryRateLimited, all)
		return
	}
	rd := &histRead{m: m, epoch: epoch, after: after}
	select {
	case r.reads <- rd:
		m.read, m.rec, m.recBytes, m.recHole = rd, nil, 0, false
	default:
		r.readsBy.WithLabelValues("busy").Inc()
		r.failLocked(m, shard.RecoveryError, all)
	}
}

func (r *recoverer) work() {
	defer r.wg.Done()
	for {
		select {
		case <-r.quit:
			return
		case rd := <-r.reads:
			r.doRead(rd)
		}
	}
}

func (r *recoverer) doRead(rd *histRead) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.ReadTimeout)
	msgs, ok, err := r.hist.History(ctx, rd.m.name, rd.epoch, rd.after)
	cancel()
	var frames []*shard.Frame
	if err == nil && ok {
		frames, err = historyFrames(rd, msgs)
	}
	r.finish(rd, frames, ok, err)
}

// historyFrames encodes a read's deltas once, checking that they are what was asked.
func historyFrames(rd *histRead, msgs []bus.Message) ([]*shard.Frame, error) {
	frames := make([]*shard.Frame, len(msgs))
	for i, msg := range msgs {
		if msg.Kind != bus.KindDelta || msg.Match != rd.m.name || (msg.Epoch != "" && msg.Epoch != rd.epoch) || msg.Seq != rd.after+1+uint64(i) {
			return nil, fmt.Errorf("history of %s after %s:%d: message %d is %s/%s:%d", rd.m.name, rd.epoch, rd.after, i, msg.Match, msg.Epoch, msg.Seq)
		}
		frames[i] = shard.NewBusFrame(msg)
	}
	return frames, nil
}

// finish takes a read's result.
func (r *recoverer) finish(rd *histRead, frames []*shard.Frame, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := rd.m
	if rd.stale || r.matches[m.name] != m {
		r.readsBy.WithLabelValues("discarded").Inc()
		return // the requests it served were dropped with it, or asked again
	}
	m.read = nil
	rec, hole := m.rec, m.recHole
	m.rec, m.recBytes, m.recHole = nil, 0, false
	sameEpoch := func(req shard.HistoryRequest) bool { return req.Since.Epoch == rd.epoch }
	switch {
	case errors.Is(err, bus.ErrUnknownMatch):
		r.readsBy.WithLabelValues("unavailable").Inc()
		r.failLocked(m, shard.RecoveryUnavailable, func(shard.HistoryRequest) bool { return true })
	case err != nil:
		r.readsBy.WithLabelValues("error").Inc()
		r.s.log.Warn("history read failed", "match", m.name, "epoch", rd.epoch, "after", rd.after, "err", err)
		r.failLocked(m, shard.RecoveryError, sameEpoch)
	case !ok:
		// Another epoch, older than the history, or ahead of the store: it holds for
		// the lowest position asked; the others get a read of their own.
		r.readsBy.WithLabelValues("unavailable").Inc()
		r.failLocked(m, shard.RecoveryUnavailable, func(req shard.HistoryRequest) bool {
			return sameEpoch(req) && req.Since.Seq <= rd.after
		})
	default:
		r.readsBy.WithLabelValues("ok").Inc()
		if r.keepLocked(m, rd, frames, rec, hole) {
			waiting := m.waiting
			m.waiting = nil
			for _, req := range waiting {
				if !r.fromKeptLocked(m, req) {
					m.waiting = append(m.waiting, req)
				}
			}
			m.trim(r.opts)
		}
	}
	r.readLocked(m)
}

// keepLocked joins a read (deltas rd.after+1 .. H) to the live deltas delivered since it
// began (rec) and to what m kept already, which is current. false: they do not join (rec
// lost its oldest to the bounds, or a hole): the waiting requests get another read.
func (r *recoverer) keepLocked(m *keptMatch, rd *histRead, frames, rec []*shard.Frame, hole bool) bool {
	if hole {
		return false
	}
	h := rd.after + uint64(len(frames))
	run := frames
	if len(rec) > 0 {
		r0 := rec[0].Seq
		if r0 > h+1 {
			return false
		}
		if skip := h + 1 - r0; skip < uint64(len(rec)) {
			// The live deltas past the read's last (those up to it, the read has).
			run = append(frames[:len(frames):len(frames)], rec[skip:]...)
		}
	}
	if m.kept && m.epoch == rd.epoch && m.first < rd.after+1 && m.last() >= rd.after {
		// What was kept reaches further back: keep its head.
		head := m.frames[:rd.after+1-m.first]
		run = append(append(make([]*shard.Frame, 0, len(head)+len(run)), head...), run...)
	} else {
		m.first = rd.after + 1
	}
	m.kept, m.epoch, m.frames = true, rd.epoch, run
	m.bytes = 0
	for _, f := range run {
		m.bytes += len(f.Bytes)
	}
	return true
}

// tick gives up waiting for feeds that never confirmed, and drops what no one used.
func (r *recoverer) tick(now time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.nextTick) {
		return
	}
	r.nextTick = now.Add(recoveryTickInterval)
	for _, m := range r.matches {
		if !m.live && !now.Before(m.liveBy) {
			m.live = true
			r.readLocked(m)
		}
		if m.kept && len(m.waiting) == 0 && now.Sub(m.used) > r.opts.KeptIdle {
			m.drop()
		}
	}
}
