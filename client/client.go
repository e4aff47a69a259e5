package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"crease/bus"

	"github.com/gorilla/websocket"
)

// Phase is the coarse state of a Client.
type Phase uint8

// The phases reported through Options.OnStatus.
const (
	Connecting   Phase = iota + 1 // dialing, or waiting for `hello`
	Live                          // connected, every subscribed match holds a current state
	Resyncing                     // connected, fetching the snapshot of at least one match
	Reconnecting                  // disconnected, dialing again in Status.In
	Closed                        // Run has returned
)

// String returns the phase's name.
func (p Phase) String() string {
	switch p {
	case Connecting:
		return "connecting"
	case Live:
		return "live"
	case Resyncing:
		return "resyncing"
	case Reconnecting:
		return "reconnecting"
	case Closed:
		return "closed"
	}
	return "unknown"
}

// Status is what Options.OnStatus receives.
type Status struct {
	Phase Phase
	In    time.Duration // Reconnecting: the delay before the next dial
	Err   error         // Reconnecting: why the last connection or dial ended
}

// Cause says why a State was delivered.
type Cause uint8

// The causes of a State.
const (
	CauseSnapshot Cause = iota + 1 // the first state of a subscription
	CauseDelta                     // a delta was applied
	CauseResync                    // a later snapshot: after `resync`, a gap or a reconnect
)

// String returns the cause's name.
func (c Cause) String() string {
	switch c {
	case CauseSnapshot:
		return "snapshot"
	case CauseDelta:
		return "delta"
	case CauseResync:
		return "resync"
	}
	return "unknown"
}

// State is the whole state of a match as a subscriber sees it.
type State struct {
	Match string
	Seq   uint64
	JSON  []byte // shared between subscribers: never modify it
	Cause Cause
}

// Snapshot is the answer of GET /v1/matches/{id}. A match that has not started (404) is
// Seq 0 with State {}.
type Snapshot struct {
	Match string          `json:"match"`
	Seq   uint64          `json:"seq"`
	State json.RawMessage `json:"state"`
}

// ServerError is an `error` frame: the gateway refused a request.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return "client: server refused: " + e.Code + ": " + e.Message }

// Observer sees what a Client sees, in the order Run's goroutine handles it; Checker
// implements it. The methods run on Run's goroutine and must not block.
type Observer interface {
	// Connected: a new connection is up; its frames follow.
	Connected()
	// Frame: one server frame, in arrival order. The client never reuses raw; the
	// observer may keep it but must not modify it.
	Frame(raw []byte)
	// SnapshotRequested: a snapshot of match is about to be fetched (at most one fetch
	// per match is outstanding).
	SnapshotRequested(match string)
	// Snapshot: the answer of that fetch.
	Snapshot(s Snapshot)
}

type subscriber struct {
	fn     func(State)
	primed bool // has received a State; guarded by Client.mu
}

// Client keeps subscriptions to matches alive over a gateway connection and rebuilds
// each match's state (see the package documentation).
type Client struct {
	opts    Options
	running atomic.Bool
	wake    chan struct{} // capacity 1: "the subscriptions changed"

	mu      sync.Mutex
	subs    map[string]map[uint64]*subscriber
	nextID  uint64
	onEvent func(match string, raw []byte)
	onError func(*ServerError)
}

// New validates opts, fills in the defaults and returns a Client. Nothing happens until Run.
func New(opts Options) (*Client, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	return &Client{opts: opts, wake: make(chan struct{}, 1), subs: map[string]map[uint64]*subscriber{}}, nil
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

// FetchSnapshot fetches the snapshot of match once (no retry).
func (c *Client) FetchSnapshot(ctx context.Context, match string) (Snapshot, error) {
	if !bus.ValidMatchID(match) {
		return Snapshot{}, fmt.Errorf("%w: %q", ErrBadMatchID, match)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.opts.SnapshotURL(match), nil)
	if err != nil {
		return Snapshot{}, err
	}
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return Snapshot{}, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		// Not started: the publisher writes the snapshot with the first delta, so no
		// delta exists yet and every one will reach the connection.
		return Snapshot{Match: match, State: json.RawMessage("{}")}, nil
	default:
		return Snapshot{}, fmt.Errorf("client: snapshot of %s: HTTP %d", match, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Snapshot{}, err
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return Snapshot{}, fmt.Errorf("client: snapshot of %s: %w", match, err)
	}
	if s.Match != match || !isJSONObject(s.State) {
		return Snapshot{}, fmt.Errorf("client: snapshot of %s: bad body (match %q, state %.40q)", match, s.Match, s.State)
	}
	return s, nil
}

func (c *Client) jitter(d time.Duration) time.Duration {
	return time.Duration(c.opts.Rand() * float64(d))
}

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
		conn, resp, err := c.opts.Dialer.DialContext(ctx, c.opts.URL, c.opts.Header)
		var after time.Duration
		drained := false
		if err == nil {
			var helloed bool
			after, drained, helloed, err = l.serve(ctx, conn)
			if helloed {
				attempt = 0 // the gateway took us: a later failure is a new incident
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		var delay time.Duration
		if drained {
			// The gateway spread after_ms over its clients already.
			delay = after
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

// retryAfter reads the Retry-After seconds of a refused handshake (503).
func retryAfter(resp *http.Response) time.Duration {
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// frame holds the fields of every server frame.
type frame struct {
	Type       string          `json:"type"`
	Match      string          `json:"match"`
	Seq        uint64          `json:"seq"`
	Patch      json.RawMessage `json:"patch"`
	Reason     string          `json:"reason"`
	AfterMS    int64           `json:"after_ms"`
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	Node       string          `json:"node"`
	HeartbeatS float64         `json:"heartbeat_s"`
}

// matchRun is the loop's record of one subscribed match.
type matchRun struct {
	match     string
	stream    *Stream
	sent      bool // subscribe sent on the current connection
	fetching  bool // a fetch goroutine is out
	refetch   bool // a resync or gap arrived while fetching: fetch again
	retries   int  // snapshots in a row that left the stream waiting
	delivered bool // a State has been delivered (the next snapshot is CauseResync)
}

type fetchResult struct {
	run  *matchRun
	snap Snapshot
}

type readItem struct {
	data []byte
	err  error
}

// loop is the state owned by Run's goroutine.
type loop struct {
	c      *Client
	runs   map[string]*matchRun
	status Status
	// per connection
	conn    *websocket.Conn
	ready   bool // `hello` received
	connCtx context.Context
	fetched chan fetchResult
	wg      *sync.WaitGroup
}

func (l *loop) setStatus(s Status) {
	if s.Phase == l.status.Phase && s.In == l.status.In && s.Phase != Reconnecting {
		return
	}
	l.status = s
	if f := l.c.opts.OnStatus; f != nil {
		f(s)
	}
}

// connStatus recomputes the status of a connected loop.
func (l *loop) connStatus() {
	switch {
	case !l.ready:
		l.setStatus(Status{Phase: Connecting})
	default:
		for _, r := range l.runs {
			if r.stream.Waiting() {
				l.setStatus(Status{Phase: Resyncing})
				return
			}
		}
		l.setStatus(Status{Phase: Live})
	}
}

// serve runs one connection until it ends. after and drained report a `reconnect`
// frame; helloed whether the gateway said hello.
func (l *loop) serve(ctx context.Context, conn *websocket.Conn) (after time.Duration, drained, helloed bool, err error) {
	opts := &l.c.opts
	connCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	in := make(chan readItem, 16)
	var readTimeout atomic.Int64
	readTimeout.Store(int64(DefaultHelloTimeout))
	l.conn, l.ready, l.connCtx, l.fetched, l.wg = conn, false, connCtx, make(chan fetchResult), &wg
	defer func() {
		cancel()
		conn.Close() // unblocks the reader
		wg.Wait()
		l.conn, l.ready = nil, false
	}()

	conn.SetReadLimit(DefaultMaxFrameBytes)
	extend := func() {
		var deadline time.Time // zero: no heartbeat, no deadline
		if d := time.Duration(readTimeout.Load()); d > 0 {
			deadline = time.Now().Add(d)
		}
		conn.SetReadDeadline(deadline)
	}
	conn.SetPingHandler(func(data string) error {
		extend()
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(DefaultWriteTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	wg.Add(1)
	go func() { // the reader: the only goroutine that reads conn
		defer wg.Done()
		first := true
		for {
			extend()
			typ, data, err := conn.ReadMessage()
			if err != nil {
				select {
				case in <- readItem{err: err}:
				case <-connCtx.Done():
				}
				return
			}
			if typ != websocket.TextMessage {
				continue
			}
			if first {
				// The first frame is `hello` (PROTOCOL.md): from now on the gateway pings
				// every heartbeat_s, so 3 silent heartbeats mean a dead link. Read here,
				// not in the loop, so the next read already has the right deadline.
				first = false
				var h frame
				if json.Unmarshal(data, &h) == nil && h.Type == "hello" {
					readTimeout.Store(int64(3 * h.HeartbeatS * float64(time.Second)))
				}
			}
			select {
			case in <- readItem{data: data}:
			case <-connCtx.Done():
				return
			}
		}
	}()

	// A new connection continues nothing: every match needs a fresh snapshot.
	for _, r := range l.runs {
		r.stream.Resync()
		r.sent, r.fetching, r.refetch, r.retries = false, false, false, 0
	}
	if o := opts.Observer; o != nil {
		o.Connected()
	}
	l.connStatus()
	for {
		select {
		case <-ctx.Done():
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return 0, false, l.ready, ctx.Err()
		case it := <-in:
			if it.err != nil {
				return after, drained, l.ready, it.err
			}
			if o := opts.Observer; o != nil {
				o.Frame(it.data)
			}
			if d, ok := l.handle(it.data); ok {
				// Drain: close now; Run waits after_ms before dialing again.
				conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				return d, true, true, errors.New("client: gateway draining (reconnect frame)")
			}
		case r := <-l.fetched:
			l.snapshot(r)
		case <-l.c.wake:
			l.reconcile()
		}
		l.connStatus()
	}
}

// handle acts on one frame; it returns the after_ms of a `reconnect` frame.
func (l *loop) handle(raw []byte) (time.Duration, bool) {
	log := l.c.opts.Logger
	var f frame
	if err := json.Unmarshal(raw, &f); err != nil {
		log.Warn("crease client: bad frame", "err", err)
		return 0, false
	}
	switch f.Type {
	case "hello":
		l.ready = true
		l.reconcile()
	case "subscribed":
		if r := l.runs[f.Match]; r != nil && r.stream.Waiting() && !r.fetching {
			// Only now: deltas published after `subscribed` are sure to arrive, so a
			// snapshot taken after it leaves no hole.
			l.fetch(r)
		}
	case "delta":
		r := l.runs[f.Match]
		if r == nil {
			return 0, false
		}
		act, err := r.stream.Delta(f.Seq, f.Patch)
		if err != nil {
			log.Warn("crease client: delta", "match", f.Match, "err", err)
		}
		switch act {
		case Applied:
			l.deliver(r, CauseDelta)
		case Gap:
			log.Info("crease client: gap, refetching", "match", f.Match, "seq", f.Seq, "have", r.stream.Seq())
			l.fetch(r)
		}
	case "resync":
		if r := l.runs[f.Match]; r != nil {
			r.stream.Resync()
			l.fetch(r)
		}
	case "event":
		if l.runs[f.Match] == nil {
			return 0, false
		}
		l.c.mu.Lock()
		fn := l.c.onEvent
		l.c.mu.Unlock()
		if fn != nil {
			fn(f.Match, raw)
		}
	case "error":
		log.Warn("crease client: server error", "code", f.Code, "message", f.Message)
		l.c.mu.Lock()
		fn := l.c.onError
		l.c.mu.Unlock()
		if fn != nil {
			fn(&ServerError{Code: f.Code, Message: f.Message})
		}
	case "reconnect":
		return time.Duration(max(f.AfterMS, 0)) * time.Millisecond, true
	default:
		log.Debug("crease client: unknown frame type", "type", f.Type)
	}
	return 0, false
}

// fetch starts a snapshot fetch of r unless one is out (then it is repeated after).
func (l *loop) fetch(r *matchRun) {
	if r.fetching {
		r.refetch = true
		return
	}
	r.fetching = true
	var delay time.Duration
	if r.retries > 0 {
		// The last snapshot did not close the hole: do not hammer the endpoint.
		delay = l.c.jitter(l.c.opts.Backoff.Base << min(r.retries-1, 10))
	}
	if o := l.c.opts.Observer; o != nil {
		o.SnapshotRequested(r.match)
	}
	ctx, out, c := l.connCtx, l.fetched, l.c
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for attempt := 0; ; attempt++ {
			if !sleepCtx(ctx, delay) {
				return
			}
			fctx, cancel := context.WithTimeout(ctx, DefaultFetchTimeout)
			s, err := c.FetchSnapshot(fctx, r.match)
			cancel()
			if err == nil {
				select {
				case out <- fetchResult{run: r, snap: s}:
				case <-ctx.Done():
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			c.opts.Logger.Warn("crease client: snapshot fetch", "match", r.match, "err", err)
			delay = c.jitter(min(c.opts.Backoff.Cap, c.opts.Backoff.Base<<min(attempt, 10)))
		}
	}()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// snapshot applies a fetch result.
func (l *loop) snapshot(res fetchResult) {
	r := res.run
	if l.runs[r.match] != r {
		return // unsubscribed meanwhile
	}
	r.fetching = false
	if o := l.c.opts.Observer; o != nil {
		o.Snapshot(res.snap)
	}
	if err := r.stream.Snapshot(res.snap.Seq, res.snap.State); err != nil {
		l.c.opts.Logger.Warn("crease client: snapshot", "match", r.match, "err", err)
	}
	if r.stream.Seq() > 0 {
		cause := CauseResync
		if !r.delivered {
			cause = CauseSnapshot
		}
		l.deliver(r, cause)
	}
	switch {
	case r.stream.Waiting():
		r.retries++
		l.fetch(r)
	case r.refetch:
		r.refetch = false
		r.retries = 0
		r.stream.Resync() // the resync came after this fetch was sent
		l.fetch(r)
	default:
		r.retries = 0
	}
}

// deliver hands r's state to its subscribers.
func (l *loop) deliver(r *matchRun, cause Cause) {
	r.delivered = true
	st := State{Match: r.match, Seq: r.stream.Seq(), JSON: r.stream.State(), Cause: cause}
	for _, fn := range l.c.callbacks(r.match, false) {
		fn(st)
	}
}

// callbacks returns the subscribers of match (only those never served, if fresh) and
// marks them served.
func (c *Client) callbacks(match string, fresh bool) []func(State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var fns []func(State)
	ids := slices.Sorted(maps.Keys(c.subs[match]))
	for _, id := range ids {
		s := c.subs[match][id]
		if fresh && s.primed {
			continue
		}
		s.primed = true
		fns = append(fns, s.fn)
	}
	return fns
}

// reconcile brings the connection's subscriptions in line with Subscribe's.
func (l *loop) reconcile() {
	l.c.mu.Lock()
	want := slices.Sorted(maps.Keys(l.c.subs))
	l.c.mu.Unlock()
	wanted := map[string]bool{}
	for _, m := range want {
		wanted[m] = true
		if l.runs[m] == nil {
			l.runs[m] = &matchRun{match: m, stream: NewStream()}
		}
	}
	for _, m := range slices.Sorted(maps.Keys(l.runs)) {
		r := l.runs[m]
		if !wanted[m] {
			if l.ready && r.sent {
				l.send("unsubscribe", m)
			}
			delete(l.runs, m)
			continue
		}
		if l.ready && !r.sent {
			r.sent = true
			l.send("subscribe", m)
		}
		if r.delivered && r.stream.Seq() > 0 {
			st := State{Match: m, Seq: r.stream.Seq(), JSON: r.stream.State(), Cause: CauseSnapshot}
			for _, fn := range l.c.callbacks(m, true) {
				fn(st)
			}
		}
	}
}

// send writes a client message; a failed write closes the connection, which the reader
// then reports.
func (l *loop) send(op, match string) {
	if l.conn == nil {
		return
	}
	msg, _ := json.Marshal(map[string]string{"op": op, "match": match})
	l.conn.SetWriteDeadline(time.Now().Add(DefaultWriteTimeout))
	if err := l.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
		l.c.opts.Logger.Warn("crease client: write", "err", err)
		l.conn.Close()
	}
}
