package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"crease/bus"
)

// manager owns the set of Redis subscriptions. Subscribe and Unsubscribe only record
// the wanted state and wake it; its goroutine (run) applies the changes, so event loops
// never wait for Redis.
type manager struct {
	b *Bus

	mu      sync.Mutex
	pending map[string]bool // match -> wanted; the latest call wins
	wake    chan struct{}

	// now is the debounce's clock (time.Now; tests move one by hand), read only by run.
	now func() time.Time
	// settle asks run to answer (close the channel) once it has applied every change
	// recorded before: tests wait on it instead of on time.
	settle chan chan struct{}

	// Owned by run.
	active   map[string]*sub
	unsubAt  map[string]time.Time     // debounced unsubscribes
	stopping map[string]chan struct{} // done of a canceled sub that may still be unsubscribing
	exited   chan *sub
}

func newManager(b *Bus) *manager {
	return &manager{
		b:        b,
		pending:  map[string]bool{},
		wake:     make(chan struct{}, 1),
		now:      time.Now,
		settle:   make(chan chan struct{}),
		active:   map[string]*sub{},
		unsubAt:  map[string]time.Time{},
		stopping: map[string]chan struct{}{},
		exited:   make(chan *sub),
	}
}

func (m *manager) want(match string, on bool) {
	m.mu.Lock()
	m.pending[match] = on
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Subscribe asks for the match's channel. It never blocks; an invalid match id is
// ignored (it could never carry a valid message).
func (b *Bus) Subscribe(match string) {
	if bus.ValidMatchID(match) {
		b.subs.want(match, true)
	}
}

// Unsubscribe drops the match's channel after UnsubscribeDebounce unless Subscribe is
// called again meanwhile. It never blocks.
func (b *Bus) Unsubscribe(match string) {
	if bus.ValidMatchID(match) {
		b.subs.want(match, false)
	}
}

// Start begins delivering to sink from a goroutine of its own. It does not wait for
// Redis. Subscriptions requested before Start are applied now.
func (b *Bus) Start(ctx context.Context, sink bus.Sink) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return bus.ErrClosed
	}
	if b.started.Swap(true) {
		return ErrAlreadyStarted
	}
	tr := bus.NewTracker(sink)
	b.track.Store(tr)
	b.wg.Add(2)
	go b.deliverLoop(tr)
	go b.subs.run()
	return nil
}

func (m *manager) run() {
	defer m.b.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var settled chan struct{}
		select {
		case <-m.b.ctx.Done():
			m.stopAll()
			return
		case <-m.wake:
		case settled = <-m.settle:
		case s := <-m.exited:
			if m.stopping[s.match] == s.done {
				delete(m.stopping, s.match)
			}
		case <-timer.C:
		}
		// Whatever woke it, what was asked before is applied before anything expires:
		// a Subscribe recorded in time cancels its match's unsubscribe.
		m.apply()
		m.expire()
		m.arm(timer)
		if settled != nil {
			close(settled)
		}
	}
}

func (m *manager) apply() {
	m.mu.Lock()
	changes := m.pending
	m.pending = make(map[string]bool, len(changes))
	m.mu.Unlock()
	for match, on := range changes {
		switch {
		case on:
			delete(m.unsubAt, match)
			if m.active[match] == nil {
				m.start(match)
			}
		case m.active[match] != nil:
			if _, ok := m.unsubAt[match]; !ok {
				m.unsubAt[match] = m.now().Add(m.b.opts.UnsubscribeDebounce)
			}
		}
	}
}

func (m *manager) expire() {
	now := m.now()
	for match, at := range m.unsubAt {
		if !now.Before(at) {
			delete(m.unsubAt, match)
			m.stop(match)
		}
	}
}

func (m *manager) arm(timer *time.Timer) {
	var next time.Time
	for _, at := range m.unsubAt {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	d := time.Hour
	if !next.IsZero() {
		d = max(next.Sub(m.now()), time.Millisecond)
	}
	timer.Reset(d)
}

func (m *manager) start(match string) {
	ctx, cancel := context.WithCancel(m.b.ctx)
	s := &sub{b: m.b, match: match, channel: m.b.channel(match), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	prev := m.stopping[match]
	delete(m.stopping, match)
	m.active[match] = s
	m.b.m.subscriptions.Inc()
	m.b.wg.Add(1)
	go s.run(prev, m.exited)
}

func (m *manager) stop(match string) {
	s := m.active[match]
	if s == nil {
		return
	}
	delete(m.active, match)
	m.b.m.subscriptions.Dec()
	s.cancel()
	m.stopping[match] = s.done
}

func (m *manager) stopAll() {
	for match := range m.active {
		m.stop(match)
	}
}

// sub is one match's subscription: a goroutine running client.Receive for the match's
// channel (see doc.go for why one Receive per match).
type sub struct {
	b       *Bus
	match   string
	channel string
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	confirm atomic.Int64 // subscribe confirmations over this sub's life
}

func (s *sub) run(prev chan struct{}, exited chan<- *sub) {
	defer s.b.wg.Done()
	defer func() {
		s.b.q.pushMarker(itemStopped, s.match)
		close(s.done)
		select {
		case exited <- s:
		case <-s.b.ctx.Done():
		}
	}()
	if prev != nil {
		// The previous subscription's UNSUBSCRIBE must reach Redis before our
		// SUBSCRIBE, or it would cancel ours.
		select {
		case <-prev:
		case <-s.ctx.Done():
			return
		}
	}
	backoff := minBackoff
	for {
		c := s.b.waitClient(s.ctx)
		if c == nil {
			return
		}
		began := time.Now()
		err := c.Receive(s.receiveCtx(), s.subscribeCmd(c), s.onMessage)
		if s.ctx.Err() != nil {
			return
		}
		// Receive ends while still wanted after a slot migration (sunsubscribe, err nil)
		// or when rueidis gives up on a broken link. Subscribe again; the confirmation
		// reports the loss.
		s.b.log.Debug("subscription ended, resubscribing", "match", s.match, "err", err)
		if time.Since(began) > maxBackoff {
			backoff = minBackoff
		}
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (s *sub) subscribeCmd(c rueidis.Client) rueidis.Completed {
	if s.b.opts.Cluster {
		return c.B().Ssubscribe().Channel(s.channel).Build()
	}
	return c.B().Subscribe().Channel(s.channel).Build()
}

func (s *sub) receiveCtx() context.Context {
	// Runs on the connection's reader goroutine: queue a marker, nothing more.
	ctx := rueidis.WithOnSubscriptionHook(s.ctx, func(ps rueidis.PubSubSubscription) {
		if ps.Kind != "subscribe" && ps.Kind != "ssubscribe" {
			return
		}
		if s.confirm.Add(1) == 1 {
			s.b.q.pushMarker(itemSubscribed, s.match)
			return
		}
		// rueidis resubscribed after a disconnect (or we did after a migration):
		// whatever was published meanwhile is gone.
		s.b.m.resubscribes.Inc()
		s.b.q.pushMarker(itemResubscribed, s.match)
	})
	// Receive does not unsubscribe when its context ends; do it on the same connection.
	return rueidis.WithOnReceiveReturnHook(ctx, func(err error, cc rueidis.CommandClient) error {
		if s.ctx.Err() == nil || s.b.ctx.Err() != nil {
			return err // not an unsubscribe, or the whole bus is closing
		}
		ctx, cancel := context.WithTimeout(s.b.ctx, time.Second)
		defer cancel()
		var cmd rueidis.Completed
		if s.b.opts.Cluster {
			cmd = cc.B().Sunsubscribe().Channel(s.channel).Build()
		} else {
			cmd = cc.B().Unsubscribe().Channel(s.channel).Build()
		}
		if uerr := cc.Do(ctx, cmd).Error(); uerr != nil {
			s.b.log.Debug("unsubscribe failed", "match", s.match, "err", uerr)
		}
		return err
	})
}

// onMessage runs on the Receive goroutine, which rueidis feeds from the connection's
// reader through a small channel: it must not block, so it only queues.
func (s *sub) onMessage(msg rueidis.PubSubMessage) {
	if len(msg.Message) > bus.MaxMessageBytes {
		// Too large to queue: an empty stand-in has the deliverer count it invalid.
		s.b.q.pushMessage(s.match, "")
		return
	}
	// A drop is counted, and reported Lost, by the deliverer.
	s.b.q.pushMessage(s.match, msg.Message)
}
