package client

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// matchRun is the loop's record of one subscribed match.
type matchRun struct {
	match     string
	stream    *Stream
	sent      bool         // subscribe sent on the current connection
	since     bool         // ... with `since`: `subscribed` says whether it recovered
	confirmed bool         // `subscribed` received on the current connection
	refused   *ServerError // the gateway refused the subscription on this connection
	fetching  bool         // a fetch goroutine is out
	refetch   bool         // a resync or gap arrived while fetching: fetch again
	retries   int          // snapshots in a row that left the stream waiting
	landed    int          // snapshots applied since a delta last was: each refetch waits longer
	limited   int          // subscribes in a row refused with rate_limited
	sentAt    int          // loop.unsubs when the subscribe was sent
	sentAuths int          // loop.auths when the subscribe was sent
	delivered bool         // a State has been delivered (the next snapshot is CauseResync)
}

type fetchResult struct {
	run  *matchRun
	snap Snapshot
}

type readItem struct {
	data []byte
	err  error
}

type tokenResult struct {
	tok string
	exp time.Time
	err error
}

// connEnd is how a connection ended.
type connEnd struct {
	err     error
	after   time.Duration // drained: the after_ms of the `reconnect` frame
	drained bool
	healthy bool // it delivered a delta or stayed open stableAfter
}

// loop is the state owned by Run's goroutine.
type loop struct {
	c      *Client
	runs   map[string]*matchRun
	status Status
	// per connection
	conn      *websocket.Conn
	ready     bool // `hello` received
	gotDelta  bool // a delta of a subscribed match arrived
	connCtx   context.Context
	fetched   chan fetchResult
	resub     chan *matchRun // a rate-limited subscribe is due again
	wg        *sync.WaitGroup
	unsubs    int              // unsubscribes sent on this connection
	auths     int              // auth ops sent on this connection
	refresh   timer            // the token refresh, nil when none is due
	refreshed chan tokenResult // the provider's answer to a refresh
	refreshN  int              // refreshes in a row that failed
	tokenExp  time.Time        // exp of the connection's token (zero: unknown)
	// authPrevExp is tokenExp before the last `auth` sent (zero: none outstanding).
	authPrevExp time.Time
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

// connStatus recomputes the status of a connected loop. A match whose subscription the
// gateway refused waits for nothing on this connection, so it does not hold the status
// at Resyncing.
func (l *loop) connStatus() {
	switch {
	case !l.ready:
		l.setStatus(Status{Phase: Connecting})
	default:
		for _, r := range l.runs {
			if r.refused == nil && r.stream.Waiting() {
				l.setStatus(Status{Phase: Resyncing})
				return
			}
		}
		l.setStatus(Status{Phase: Live})
	}
}

// serve runs one connection until it ends. exp is the expiry of the token it was
// opened with (zero: none or unknown).
func (l *loop) serve(ctx context.Context, conn *websocket.Conn, exp time.Time) (end connEnd) {
	opts := &l.c.opts
	opened := l.c.clock.Now()
	connCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	in := make(chan readItem, 16)
	var readTimeout atomic.Int64
	readTimeout.Store(int64(DefaultHelloTimeout))
	l.conn, l.ready, l.gotDelta, l.connCtx, l.wg, l.unsubs, l.auths = conn, false, false, connCtx, &wg, 0, 0
	l.fetched, l.resub, l.refreshed = make(chan fetchResult), make(chan *matchRun), make(chan tokenResult)
	l.tokenExp, l.refreshN, l.authPrevExp = exp, 0, time.Time{}
	defer func() {
		l.stopRefresh()
		cancel()
		conn.Close() // unblocks the reader
		wg.Wait()
		l.conn, l.ready = nil, false
		end.healthy = l.gotDelta || l.c.clock.Now().Sub(opened) >= stableAfter
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
				if h, err := decodeFrame(data); err == nil && h.Type == "hello" {
					readTimeout.Store(int64(3 * heartbeat(h.HeartbeatS)))
				}
			}
			select {
			case in <- readItem{data: data}:
			case <-connCtx.Done():
				return
			}
		}
	}()

	// A new connection continues nothing by itself: every match waits until the gateway
	// says it recovered (`since`) or a fresh snapshot arrives.
	for _, r := range l.runs {
		r.stream.Resync()
		r.sent, r.since, r.confirmed, r.refused = false, false, false, nil
		l.c.setRefusal(r.match, nil)
		r.fetching, r.refetch, r.retries, r.landed = false, false, 0, 0
	}
	if o := opts.Observer; o != nil {
		o.Connected()
	}
	l.armRefresh()
	l.connStatus()
	for {
		var refreshC <-chan time.Time
		if l.refresh != nil {
			refreshC = l.refresh.C()
		}
		select {
		case <-ctx.Done():
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			end.err = ctx.Err()
			return end
		case it := <-in:
			if it.err != nil {
				end.err = it.err
				return end
			}
			if o := opts.Observer; o != nil {
				o.Frame(it.data)
			}
			if d, ok := l.handle(it.data); ok {
				// Drain: close now; Run waits after_ms before dialing again.
				conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				end.after, end.drained = d, true
				end.err = errors.New("client: gateway draining (reconnect frame)")
				return end
			}
		case r := <-l.fetched:
			l.snapshot(r)
		case r := <-l.resub:
			if l.runs[r.match] == r && r.refused != nil && r.refused.Code == CodeRateLimited {
				l.subscribe(r)
			}
		case <-refreshC:
			l.refresh = nil
			l.startRefresh()
		case res := <-l.refreshed:
			l.refreshDone(res)
		case <-l.c.wake:
			l.reconcile()
		}
		l.connStatus()
	}
}

// handle acts on one frame; it returns the after_ms of a `reconnect` frame.
func (l *loop) handle(raw []byte) (time.Duration, bool) {
	log := l.c.opts.Logger
	f, err := decodeFrame(raw)
	if err != nil {
		log.Warn("crease client: bad frame", "type", f.Type, "match", f.Match, "err", err)
		if r := l.runs[f.Match]; r != nil && f.Type == "delta" {
			// A delta of ours that cannot be read is a delta lost: a gap.
			r.stream.Resync()
			if r.confirmed {
				l.fetch(r)
			}
		}
		return 0, false
	}
	switch f.Type {
	case "hello":
		l.ready = true
		l.reconcile()
	case "subscribed":
		l.subscribed(&f)
	case "delta":
		r := l.runs[f.Match]
		if r == nil {
			return 0, false
		}
		l.gotDelta = true
		act, err := r.stream.ApplyDelta(f.delta())
		if err != nil {
			log.Warn("crease client: delta", "match", f.Match, "err", err)
		}
		switch act {
		case Applied:
			r.landed = 0
			l.deliver(r, CauseDelta)
		case Gap:
			log.Info("crease client: gap or new epoch, refetching", "match", f.Match, "epoch", f.Epoch, "seq", f.Seq, "have", r.stream.Position())
			if r.confirmed {
				l.fetch(r) // otherwise `subscribed` will
			}
		}
	case "resync":
		if r := l.runs[f.Match]; r != nil {
			r.stream.Resync()
			if r.confirmed {
				l.fetch(r)
			}
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
		l.serverError(&f)
	case "reconnect":
		return reconnectAfter(f.AfterMS), true
	default:
		log.Debug("crease client: unknown frame type", "type", f.Type)
	}
	return 0, false
}

// subscribed handles the gateway's acceptance of a subscription.
func (l *loop) subscribed(f *frame) {
	r := l.runs[f.Match]
	if r == nil {
		return
	}
	r.confirmed, r.refused, r.limited = true, nil, 0
	l.c.setRefusal(r.match, nil)
	since := r.since
	r.since = false
	if !r.stream.Waiting() || r.fetching {
		return // a repeated subscribe, or a fetch is out already
	}
	if since && f.Recovered {
		// The gateway replays every delta after the position held: no snapshot.
		before := r.stream.Position()
		if err := r.stream.Resume(); err != nil {
			l.c.opts.Logger.Warn("crease client: resume", "match", r.match, "err", err)
		}
		if r.stream.Position() != before {
			l.deliver(r, CauseDelta)
		}
		if !r.stream.Waiting() {
			return
		}
	}
	// Only now: deltas published after `subscribed` are sure to arrive, so a snapshot
	// taken after it leaves no hole.
	l.fetch(r)
}

// serverError handles an `error` frame: a refused subscription stops counting as one
// being synchronised, the others go on.
func (l *loop) serverError(f *frame) {
	se := &ServerError{Code: f.Code, Message: f.Message, Match: f.Match}
	l.c.opts.Logger.Warn("crease client: server error", "code", f.Code, "match", f.Match, "message", f.Message)
	if f.Code == CodeUnauthorized {
		l.authRefused()
	}
	if r := l.runs[f.Match]; r != nil {
		switch f.Code {
		case CodeForbidden, CodeBadRequest, CodeTooManySubscriptions, CodeRateLimited:
			// Whatever it held is no longer followed: a later subscribe starts over
			// (with `since`, so the gateway may still recover it).
			r.refused, r.confirmed, r.since = se, false, false
			l.c.setRefusal(r.match, se)
			r.stream.Resync()
			switch {
			case f.Code == CodeRateLimited:
				l.resubscribeLater(r)
			case f.Code == CodeTooManySubscriptions && l.unsubs > r.sentAt:
				// A slot was freed after this subscribe went out, before its refusal came.
				l.subscribe(r)
			case f.Code == CodeForbidden && l.auths > r.sentAuths:
				// A fresh token went out after this subscribe, before its refusal came:
				// the gateway judged the old claim, and the new one may allow it.
				l.subscribe(r)
			}
		}
	}
	l.c.mu.Lock()
	fn := l.c.onError
	l.c.mu.Unlock()
	if fn != nil {
		fn(se)
	}
}

// resubscribeLater sends the subscribe of a rate-limited match again after a backoff.
func (l *loop) resubscribeLater(r *matchRun) {
	r.limited++
	delay := l.c.jitter(min(l.c.opts.Backoff.Cap, max(time.Second, l.c.opts.Backoff.retryWindow(r.limited-1))))
	ctx, out := l.connCtx, l.resub
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if sleepCtx(ctx, delay) {
			select {
			case out <- r:
			case <-ctx.Done():
			}
		}
	}()
}

// retryRefused sends again the subscribes refused with one of codes.
func (l *loop) retryRefused(codes ...string) {
	for _, m := range slices.Sorted(maps.Keys(l.runs)) {
		if r := l.runs[m]; r.refused != nil && slices.Contains(codes, r.refused.Code) {
			l.subscribe(r)
		}
	}
}

// deliver hands r's state to its subscribers.
func (l *loop) deliver(r *matchRun, cause Cause) {
	r.delivered = true
	st := State{Match: r.match, Epoch: r.stream.Epoch(), Seq: r.stream.Seq(), JSON: r.stream.State(), Cause: cause}
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
	freed := false
	for _, m := range slices.Sorted(maps.Keys(l.runs)) {
		r := l.runs[m]
		if !wanted[m] {
			if l.ready && r.sent {
				l.send(clientOp{Op: "unsubscribe", Match: m})
				l.unsubs++
				freed = freed || r.refused == nil
			}
			delete(l.runs, m)
			l.c.setRefusal(m, nil)
			continue
		}
		if l.ready && !r.sent {
			l.subscribe(r)
		}
		if r.delivered && r.stream.Seq() > 0 {
			st := State{Match: m, Epoch: r.stream.Epoch(), Seq: r.stream.Seq(), JSON: r.stream.State(), Cause: CauseSnapshot}
			for _, fn := range l.c.callbacks(m, true) {
				fn(st)
			}
		}
	}
	if freed {
		l.retryRefused(CodeTooManySubscriptions) // a subscription slot is free again
	}
}

// clientOp is a client message of PROTOCOL.md.
type clientOp struct {
	Op    string    `json:"op"`
	Match string    `json:"match,omitempty"`
	Since *sincePos `json:"since,omitempty"`
	Token string    `json:"token,omitempty"`
}

type sincePos struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// subscribe sends r's subscribe, with the position held as `since` when there is one
// the gateway can recover from (a state of a known epoch).
func (l *loop) subscribe(r *matchRun) {
	r.sent, r.since, r.confirmed, r.refused, r.sentAt, r.sentAuths = true, false, false, nil, l.unsubs, l.auths
	op := clientOp{Op: "subscribe", Match: r.match}
	if r.stream.HasState() && r.stream.Epoch() != "" {
		p := r.stream.Position()
		op.Since = &sincePos{p.Epoch, p.Seq}
		r.since = true
	}
	l.send(op)
}

// send writes a client message; a failed write closes the connection, which the reader
// then reports.
func (l *loop) send(op clientOp) {
	if l.conn == nil {
		return
	}
	msg, _ := json.Marshal(op)
	l.conn.SetWriteDeadline(time.Now().Add(DefaultWriteTimeout))
	if err := l.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
		l.c.opts.Logger.Warn("crease client: write", "err", err)
		l.conn.Close()
	}
}
