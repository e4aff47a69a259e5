package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"crease/bus"
)

type subscriber struct {
	fn     func(State)
	primed bool // has received a State; guarded by Client.mu
}

// Client keeps subscriptions to matches alive over a gateway connection and rebuilds
// each match's state (see the package documentation).
type Client struct {
	opts    Options
	dialURL string // URL, with catchup=1 if asked
	tokens  *tokenSource
	clock   clock
	running atomic.Bool
	wake    chan struct{} // capacity 1: "the subscriptions changed"

	mu       sync.Mutex
	subs     map[string]map[uint64]*subscriber
	nextID   uint64
	onEvent  func(match string, raw []byte)
	onError  func(*ServerError)
	refusals map[string]*ServerError // the subscriptions refused on the current connection
}

// New validates opts, fills in the defaults and returns a Client. Nothing happens until Run.
func New(opts Options) (*Client, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	dialURL := opts.URL
	if opts.CatchUp {
		u, _ := url.Parse(opts.URL) // fill checked it
		q := u.Query()
		q.Set("catchup", "1")
		u.RawQuery = q.Encode()
		dialURL = u.String()
	}
	c := &Client{opts: opts, dialURL: dialURL, clock: realClock{}, wake: make(chan struct{}, 1), subs: map[string]map[uint64]*subscriber{}}
	c.tokens = &tokenSource{provide: opts.Token, clock: c.clock}
	return c, nil
}

// Options returns the options with the defaults filled in.
func (c *Client) Options() Options { return c.opts }

// Subscribe asks for the state of match: onState gets it after every change, on Run's
// goroutine (it must not block). It may be called before or during Run. The returned
// function ends this subscription; the match is unsubscribed when its last subscriber
// leaves. A delivery already under way may still reach onState once after that.
func (c *Client) Subscribe(match string, onState func(State)) (unsubscribe func(), err error) {
	if !bus.ValidMatchID(match) {
		return nil, fmt.Errorf("%w: %q", ErrBadMatchID, match)
	}
	if onState == nil {
		return nil, ErrNilCallback
	}
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	if c.subs[match] == nil {
		c.subs[match] = map[uint64]*subscriber{}
	}
	c.subs[match][id] = &subscriber{fn: onState}
	c.mu.Unlock()
	c.poke()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.subs[match], id)
			if len(c.subs[match]) == 0 {
				delete(c.subs, match)
			}
			c.mu.Unlock()
			c.poke()
		})
	}, nil
}

// Refusal returns why the gateway refused the subscription of match on the current
// connection (an `error` frame with that match: forbidden, bad_request,
// too_many_subscriptions, rate_limited), or nil while it is not refused. It is safe from
// any goroutine.
func (c *Client) Refusal(match string) *ServerError {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusals[match]
}

// setRefusal records (or, with nil, clears) the refusal of match.
func (c *Client) setRefusal(match string, se *ServerError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if se == nil {
		delete(c.refusals, match)
		return
	}
	if c.refusals == nil {
		c.refusals = map[string]*ServerError{}
	}
	c.refusals[match] = se
}

// OnEvent sets the handler of `event` frames of subscribed matches (raw is the frame's
// JSON text). It runs on Run's goroutine and must not block. nil removes it.
func (c *Client) OnEvent(fn func(match string, raw []byte)) {
	c.mu.Lock()
	c.onEvent = fn
	c.mu.Unlock()
}

// OnError sets the handler of `error` frames. It runs on Run's goroutine and must not
// block. nil removes it.
func (c *Client) OnError(fn func(*ServerError)) {
	c.mu.Lock()
	c.onError = fn
	c.mu.Unlock()
}

func (c *Client) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Client) jitter(d time.Duration) time.Duration {
	return time.Duration(c.opts.Rand() * float64(d))
}

// stableAfter is how long a connection must stay open, when it delivers no delta, for
// the reconnect attempts to count from zero again (PROTOCOL.md, client algorithm step 5).
const stableAfter = 30 * time.Second

// Run connects and keeps the subscriptions alive, reconnecting as PROTOCOL.md says, until
// ctx is cancelled; then it closes the connection (code 1000) and returns nil. Only one
// Run may be active at a time (ErrRunning).
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.running.Store(false)
	l := &loop{c: c, runs: map[string]*matchRun{}}
	defer l.setStatus(Status{Phase: Closed})
	attempt := 0
	for {
		l.setStatus(Status{Phase: Connecting})
		var end connEnd
		resp, err := l.connect(ctx, &end)
		if ctx.Err() != nil {
			return nil
		}
		if end.healthy {
			// A connection that delivered a delta or lasted stableAfter: the gateway works,
			// so a later failure is a new incident. A `hello` alone proves nothing: a
			// gateway that closes right after it must not drive the client into a loop.
			attempt = 0
		}
		var delay time.Duration
		if end.drained {
			// The gateway spread after_ms over its clients already. A connection that
			// proved nothing before its `reconnect` still counts as an attempt: a gateway
			// that answers every upgrade with reconnect (after_ms 0) must not drive the
			// client into a tight loop.
			delay = end.after
			if !end.healthy {
				delay = max(delay, c.jitter(c.opts.Backoff.retryWindow(attempt)))
				attempt++
			}
		} else {
			delay = c.opts.Backoff.Delay(attempt, c.opts.Rand())
			attempt++
			if ra := retryAfter(resp); ra > delay {
				delay = ra
			}
		}
		c.opts.Logger.Info("crease client: reconnecting", "in", delay, "err", err)
		l.setStatus(Status{Phase: Reconnecting, In: delay, Err: err})
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// connect takes a fresh token, dials and serves one connection until it ends.
func (l *loop) connect(ctx context.Context, end *connEnd) (*http.Response, error) {
	c := l.c
	tok, exp, err := c.tokens.fresh(ctx)
	if err != nil {
		return nil, err
	}
	d := c.opts.Dialer
	if tok != "" {
		dd := *d
		dd.Subprotocols = append([]string{"bearer." + tok}, d.Subprotocols...)
		d = &dd
	}
	conn, resp, err := d.DialContext(ctx, c.dialURL, c.opts.Header)
	if err != nil {
		return resp, err
	}
	*end = l.serve(ctx, conn, exp)
	return resp, end.err
}

// retryAfter reads the Retry-After seconds of a 503: a refused handshake or a snapshot
// of a store behind.
func retryAfter(resp *http.Response) time.Duration {
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || s < 0 || s > 86400 { // past a day: garbage, and it would overflow
		return 0
	}
	return time.Duration(s) * time.Second
}
