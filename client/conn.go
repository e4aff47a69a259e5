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
