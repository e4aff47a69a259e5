package client

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/gorilla/websocket"

	"crease/server/servertest"
)

// fakeGW is a small gateway of PROTOCOL.md driven by the test: it holds the match
// snapshots (the publisher's side too), serves /ws and /v1/matches/{id}, and delivers
// published deltas to the connections subscribed to the match.
type fakeGW struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex // orders publishing against subscribing
	snaps     map[string]Snapshot
	hist      map[string][]histDelta // the deltas of each match's current epoch, for `since`
	conns     []*fakeConn
	dialTimes []time.Time
	dialURLs  []string
	protocols [][]string // Sec-WebSocket-Protocol offered by each dial
	snapAuth  []string   // Authorization of each snapshot GET
	refuse    int        // answer the next n dials 503
	// closeAfterHello closes the next n connections right after their `hello`.
	closeAfterHello int
	// recovery answers a subscribe with `since` from hist (recovered:true) when it can.
	recovery bool
	// refuseSub answers a subscribe to the match with this error code.
	refuseSub map[string]string
	// holdRefusals sends those answers only once the connection sends `auth`.
	holdRefusals bool
	// token, if set, says whether a token is good: a dial without one is 401, and so is
	// a snapshot GET.
	token func(tok string) bool

	heartbeat float64
	pingEvery time.Duration // 0: the fake never pings
	pongs     atomic.Int32
	connCh    chan *fakeConn
	snapGets  atomic.Int32
	snapFail  atomic.Int32 // answer the next n snapshot GETs 500 (503 with snapRetryAfter)
	// snapRetryAfter, if set, makes the failures of snapFail 503 with this Retry-After.
	snapRetryAfter string
	snapTimes      []time.Time        // when each snapshot GET arrived, guarded by mu
	snapStale      atomic.Int32       // answer the next n snapshot GETs with stale (a store behind)
	stale          Snapshot           // guarded by mu
	afterSnap      func(match string) // called after the snapshot is read, before it is sent
	afterSnapM     sync.Mutex
}

// histDelta is one published delta as the fake keeps it.
type histDelta struct {
	seq   uint64
	frame string
}

// clientMsg is what a client sends.
type clientMsg struct {
	Op    string    `json:"op"`
	Match string    `json:"match"`
	Since *sincePos `json:"since"`
	Token string    `json:"token"`
}

type fakeConn struct {
	gw     *fakeGW
	ws     *websocket.Conn
	wmu    sync.Mutex
	subs   map[string]bool // guarded by gw.mu
	ops    chan clientMsg
	closed chan struct{}
	// closeCode is the close code the client sent (0: none), valid once closed is closed.
	closeCode int
}

func newFakeGW(t *testing.T) *fakeGW {
	gw := &fakeGW{t: t, snaps: map[string]Snapshot{}, hist: map[string][]histDelta{}, refuseSub: map[string]string{}, connCh: make(chan *fakeConn, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", gw.serveWS)
	mux.HandleFunc("GET /v1/matches/{id}", gw.serveSnap)
	gw.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		gw.mu.Lock()
		for _, c := range gw.conns {
			c.ws.Close()
		}
		gw.mu.Unlock()
		gw.srv.Close()
	})
	return gw
}

func (gw *fakeGW) wsURL() string { return "ws" + strings.TrimPrefix(gw.srv.URL, "http") + "/ws" }

func (gw *fakeGW) dials() int {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	return len(gw.dialTimes)
}

func (gw *fakeGW) dialTime(i int) time.Time {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	return gw.dialTimes[i]
}

func (gw *fakeGW) setAfterSnap(f func(match string)) {
	gw.afterSnapM.Lock()
	gw.afterSnap = f
	gw.afterSnapM.Unlock()
}

func (gw *fakeGW) serveSnap(w http.ResponseWriter, r *http.Request) {
	gw.snapGets.Add(1)
	auth := r.Header.Get("Authorization")
	gw.mu.Lock()
	gw.snapAuth = append(gw.snapAuth, auth)
	gw.snapTimes = append(gw.snapTimes, time.Now())
	check := gw.token
	retryAfter := gw.snapRetryAfter
	gw.mu.Unlock()
	if tok, ok := strings.CutPrefix(auth, "Bearer "); check != nil && (!ok || !check(tok)) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	if gw.snapFail.Add(-1) >= 0 {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
			http.Error(w, "store behind", http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	id := r.PathValue("id")
	gw.mu.Lock()
	s, ok := gw.snaps[id]
	if gw.snapStale.Add(-1) >= 0 {
		s, ok = gw.stale, true
	}
	gw.mu.Unlock()
	gw.afterSnapM.Lock()
	hook := gw.afterSnap
	gw.afterSnapM.Unlock()
	if hook != nil {
		hook(id)
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`"%s.%d"`, s.Epoch, s.Seq))
	json.NewEncoder(w).Encode(s)
}

func (gw *fakeGW) serveWS(w http.ResponseWriter, r *http.Request) {
	offered := websocket.Subprotocols(r)
	var bearer string
	for _, p := range offered {
		if t, ok := strings.CutPrefix(p, "bearer."); ok {
			bearer = t
			break
		}
	}
	gw.mu.Lock()
	gw.dialTimes = append(gw.dialTimes, time.Now())
	gw.dialURLs = append(gw.dialURLs, r.URL.String())
	gw.protocols = append(gw.protocols, offered)
	if gw.refuse > 0 {
		gw.refuse--
		gw.mu.Unlock()
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if gw.token != nil && !gw.token(bearer) {
		gw.mu.Unlock()
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	closeNow := gw.closeAfterHello > 0
	if closeNow {
		gw.closeAfterHello--
	}
	gw.mu.Unlock()
	up := websocket.Upgrader{}
	if bearer != "" {
		up.Subprotocols = []string{"bearer." + bearer} // as the gateway: the bearer one is selected
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &fakeConn{gw: gw, ws: ws, subs: map[string]bool{}, ops: make(chan clientMsg, 64), closed: make(chan struct{})}
	gw.mu.Lock()
	gw.conns = append(gw.conns, c)
	gw.mu.Unlock()
	c.send(map[string]any{"type": "hello", "node": "fake", "heartbeat_s": gw.heartbeat})
	gw.connCh <- c
	defer close(c.closed)
	if closeNow {
		c.closeWith(websocket.CloseGoingAway)
		return
	}
	if gw.pingEvery > 0 {
		ws.SetPongHandler(func(string) error { gw.pongs.Add(1); return nil })
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(gw.pingEvery)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					c.wmu.Lock()
					ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
					c.wmu.Unlock()
				}
			}
		}()
	}
	var held []map[string]any // refusals kept back until the next auth (holdRefusals)
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				c.closeCode = ce.Code
			}
			gw.mu.Lock()
			c.subs = map[string]bool{}
			gw.mu.Unlock()
			return
		}
		var op clientMsg
		if json.Unmarshal(data, &op) != nil {
			c.send(map[string]any{"type": "error", "code": "bad_request", "message": "not JSON"})
			continue
		}
		switch op.Op {
		case "subscribe":
			gw.mu.Lock() // deltas published from now on reach this connection
			if code := gw.refuseSub[op.Match]; code != "" {
				refusal := map[string]any{"type": "error", "code": code, "match": op.Match, "message": "refused by the test"}
				if gw.holdRefusals {
					held = append(held, refusal)
				} else {
					c.send(refusal)
				}
			} else {
				c.subscribe(op)
			}
			gw.mu.Unlock()
		case "unsubscribe":
			gw.mu.Lock()
			delete(c.subs, op.Match)
			gw.mu.Unlock()
		case "auth":
			// The refusals held cross this auth on the wire: they reach the client after
			// it sent the fresh token, though the old one was judged.
			for _, f := range held {
				c.send(f)
			}
			held = nil
		}
		c.ops <- op
	}
}

// subscribe answers a subscribe op, recovering from hist when asked and able. gw.mu held.
func (c *fakeConn) subscribe(op clientMsg) {
	gw := c.gw
	c.subs[op.Match] = true
	if op.Since == nil {
		c.send(map[string]any{"type": "subscribed", "match": op.Match})
		return
	}
	s, h := gw.snaps[op.Match], gw.hist[op.Match]
	// Every delta after since.seq must be in the history: the oldest kept is the first
	// after it, or since is the current position.
	ok := gw.recovery && s.Epoch == op.Since.Epoch && op.Since.Seq <= s.Seq &&
		(op.Since.Seq == s.Seq || (len(h) > 0 && h[0].seq <= op.Since.Seq+1))
	c.send(map[string]any{"type": "subscribed", "match": op.Match, "recovered": ok})
	if ok {
		for _, d := range h {
			if d.seq > op.Since.Seq {
				c.send(d.frame)
			}
		}
	}
}

// send writes one frame (a JSON-able value or a string).
func (c *fakeConn) send(v any) {
	var data []byte
	if s, ok := v.(string); ok {
		data = []byte(s)
	} else {
		data, _ = json.Marshal(v)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.ws.WriteMessage(websocket.TextMessage, data)
}

// closeWith sends a close frame and drops the connection.
func (c *fakeConn) closeWith(code int) {
	c.wmu.Lock()
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	c.ws.Close()
}

// waitOp waits until the client has sent op for every one of matches, in any order.
func (c *fakeConn) waitOp(t *testing.T, op string, matches ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, m := range matches {
		missing[m] = true
	}
	timeout := time.After(5 * time.Second)
	for len(missing) > 0 {
		select {
		case o := <-c.ops:
			if o.Op == op {
				delete(missing, o.Match)
			}
		case <-timeout:
			t.Fatalf("no %s %v from the client", op, missing)
		}
	}
}

// waitConnN waits for the n-th connection (counting from 1) and returns it.
func (gw *fakeGW) waitConnN(t *testing.T, n int) *fakeConn {
	t.Helper()
	for {
		c := gw.waitConn(t)
		gw.mu.Lock()
		i := slices.Index(gw.conns, c)
		gw.mu.Unlock()
		if i+1 == n {
			return c
		}
		if i+1 > n {
			t.Fatalf("connection %d came, waiting for %d", i+1, n)
		}
	}
}

// recv returns the next value on ch; none within 5 s fails t with failure.
func recv[T any](t *testing.T, ch <-chan T, failure string) T {
	t.Helper()
	return recvFirst(t, ch, failure, func(T) bool { return true })
}

// recvFirst returns the first value on ch that want accepts, skipping the others; none
// within 5 s (for all of them) fails t with failure.
func recvFirst[T any](t *testing.T, ch <-chan T, failure string, want func(T) bool) T {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case v := <-ch:
			if want(v) {
				return v
			}
		case <-timeout:
			t.Fatal(failure)
			var zero T
			return zero
		}
	}
}

func (gw *fakeGW) waitConn(t *testing.T) *fakeConn {
	t.Helper()
	return recv(t, gw.connCh, "no connection")
}

// nextOp returns the next message the client sent.
func (c *fakeConn) nextOp(t *testing.T) clientMsg {
	t.Helper()
	return recv(t, c.ops, "the client sent nothing")
}

// setSnap sets the stored state of match without publishing (and with no epoch, as a
// version 1 gateway).
func (gw *fakeGW) setSnap(match string, seq uint64, state string) {
	gw.setSnapEpoch(match, "", seq, state)
}

// setSnapEpoch sets the stored state and epoch of match without publishing; the history
// starts over.
func (gw *fakeGW) setSnapEpoch(match, epoch string, seq uint64, state string) {
	gw.mu.Lock()
	gw.snaps[match] = Snapshot{Match: match, Epoch: epoch, Seq: seq, State: json.RawMessage(state)}
	delete(gw.hist, match)
	gw.mu.Unlock()
}

// newEpoch starts match over in epoch at seq 0 with an empty state (a publisher that
// lost everything) and, if announce, sends resync{epoch} to its subscribers.
func (gw *fakeGW) newEpoch(match, epoch string, announce bool) {
	gw.setSnapEpoch(match, epoch, 0, `{}`)
	if announce {
		gw.mu.Lock()
		for _, c := range gw.conns {
			if c.subs[match] {
				c.send(fmt.Sprintf(`{"type":"resync","match":%q,"reason":"epoch"}`, match))
			}
		}
		gw.mu.Unlock()
	}
}

// forgetHistory drops the history of match (as a history bounded in length would).
func (gw *fakeGW) forgetHistory(match string) {
	gw.mu.Lock()
	delete(gw.hist, match)
	gw.mu.Unlock()
}

func (gw *fakeGW) snap(match string) Snapshot {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	return gw.snaps[match]
}

// serveStale answers the next n snapshot GETs with s, whatever the match holds since.
func (gw *fakeGW) serveStale(s Snapshot, n int32) {
	gw.mu.Lock()
	gw.stale = s
	gw.mu.Unlock()
	gw.snapStale.Store(n)
}

// publish stores and delivers the next delta of match; deliver=false drops it silently.
func (gw *fakeGW) publish(match, patch string, deliver bool) uint64 {
	gw.t.Helper()
	gw.mu.Lock()
	defer gw.mu.Unlock()
	s := gw.snaps[match]
	if s.State == nil {
		s = Snapshot{Match: match, State: json.RawMessage(`{}`)}
	}
	next, err := jsonpatch.MergePatch(s.State, []byte(patch))
	if err != nil {
		gw.t.Fatalf("publish: %v", err)
	}
	s.Seq++
	s.State = next
	gw.snaps[match] = s
	epoch := ""
	if s.Epoch != "" {
		epoch = fmt.Sprintf(`"epoch":%q,`, s.Epoch)
	}
	frame := fmt.Sprintf(`{"type":"delta","match":%q,%s"seq":%d,"prio":"high","ts":%d,"patch":%s}`, match, epoch, s.Seq, time.Now().UnixMicro(), patch)
	gw.hist[match] = append(gw.hist[match], histDelta{s.Seq, frame})
	if deliver {
		for _, c := range gw.conns {
			if c.subs[match] {
				c.send(frame)
			}
		}
	}
	return s.Seq
}

// harness runs a Client against a fakeGW and collects what it reports.
type harness struct {
	c      *Client
	states chan State
	status chan Status
	cancel context.CancelFunc
	done   chan error
}

func startClient(t *testing.T, gw *fakeGW, tweak func(*Options)) *harness {
	t.Helper()
	return startClientOn(t, gw, nil, tweak)
}

// startClientOn is startClient with the Client's clock replaced by clk (nil: the real one).
func startClientOn(t *testing.T, gw *fakeGW, clk clock, tweak func(*Options)) *harness {
	t.Helper()
	h := &harness{states: make(chan State, 4096), status: make(chan Status, 256), done: make(chan error, 1)}
	opts := Options{
		URL:      gw.wsURL(),
		BaseHTTP: gw.srv.URL,
		Backoff:  Backoff{Base: 10 * time.Millisecond, Cap: 200 * time.Millisecond, InitialSpread: 20 * time.Millisecond},
		Rand:     func() float64 { return 0.5 },
		OnStatus: func(s Status) { h.status <- s },
		Logger:   slog.New(slog.DiscardHandler), // the tests check behaviour, not logs
	}
	if tweak != nil {
		tweak(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if clk != nil {
		c.clock, c.tokens.clock = clk, clk
	}
	cancel := h.run(c)
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
	})
	return h
}

func (h *harness) subscribe(t *testing.T, match string) func() {
	t.Helper()
	unsub, err := h.c.Subscribe(match, func(s State) { h.states <- s })
	if err != nil {
		t.Fatal(err)
	}
	return unsub
}

// waitState waits for a State of match at seq and checks it against want.
func (h *harness) waitState(t *testing.T, want Snapshot) State {
	t.Helper()
	s := recvFirst(t, h.states, fmt.Sprintf("no state of %s at seq %d", want.Match, want.Seq), func(s State) bool {
		return s.Match == want.Match && s.Seq >= want.Seq
	})
	if s.Seq > want.Seq {
		t.Fatalf("state of %s jumped to seq %d past %d", s.Match, s.Seq, want.Seq)
	}
	mustEqualJSON(t, string(s.JSON), string(want.State))
	return s
}

// waitStatus waits for a status of the given phase and returns it.
func (h *harness) waitStatus(t *testing.T, p Phase) Status {
	t.Helper()
	return recvFirst(t, h.status, fmt.Sprintf("no status %v", p), func(s Status) bool { return s.Phase == p })
}

// waitSettledStatus waits until the last status reported is of phase p: it reads the
// statuses until one of phase p is the last queued. It is for a condition the client
// has reached already (its states received): the loop reports the status only after a
// state's delivery, so it may still be on its way, and a status is reported only when
// it changes, so nothing still pending behind the one read can be p again.
func (h *harness) waitSettledStatus(t *testing.T, p Phase) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	var last Status
	for {
		select {
		case last = <-h.status:
			if last.Phase == p && len(h.status) == 0 {
				return
			}
		case <-timeout:
			t.Fatalf("status %v, want %v as the last one", last.Phase, p)
		}
	}
}

// frameObserver wraps a Checker and reports observed frames on a channel.
type frameObserver struct {
	*Checker
	frames chan []byte
}

func (o *frameObserver) Frame(raw []byte) {
	o.Checker.Frame(raw)
	select {
	case o.frames <- raw:
	default:
	}
}

// waitStateSeq waits for the state of want.Match at want.Seq, skipping others (even
// later ones: a burst may be delivered as one snapshot), and checks it.
func (h *harness) waitStateSeq(t *testing.T, want Snapshot) {
	t.Helper()
	s := recvFirst(t, h.states, fmt.Sprintf("no state of %s at seq %d", want.Match, want.Seq), func(s State) bool {
		return s.Match == want.Match && s.Seq == want.Seq
	})
	mustEqualJSON(t, string(s.JSON), string(want.State))
}

// fakeClock is a clock the test moves (servertest.Clock: Now, Advance); its timers fire
// only when the test says so.
type fakeClock struct {
	*servertest.Clock
	armed chan *fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{Clock: servertest.NewClockAt(time.Unix(1_800_000_000, 0)), armed: make(chan *fakeTimer, 64)}
}

func (c *fakeClock) NewTimer(d time.Duration) timer {
	t := &fakeTimer{clk: c, d: d, c: make(chan time.Time, 1)}
	c.armed <- t
	return t
}

// nextTimer waits for the client to arm a timer.
func (c *fakeClock) nextTimer(t *testing.T) *fakeTimer {
	t.Helper()
	return recv(t, c.armed, "no timer armed")
}

type fakeTimer struct {
	clk     *fakeClock
	d       time.Duration
	c       chan time.Time
	stopped atomic.Bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { return !t.stopped.Swap(true) }

// fire moves the clock to the timer's deadline and fires it.
func (t *fakeTimer) fire() {
	t.clk.Advance(t.d)
	t.c <- t.clk.Now()
}

// waitStateSeqEpoch waits for the state of want.Match at want's epoch and seq, skipping
// others, checks it and returns it.
func (h *harness) waitStateSeqEpoch(t *testing.T, want Snapshot) State {
	t.Helper()
	s := recvFirst(t, h.states, fmt.Sprintf("no state of %s at %s:%d", want.Match, want.Epoch, want.Seq), func(s State) bool {
		return s.Match == want.Match && s.Seq == want.Seq && s.Epoch == want.Epoch
	})
	mustEqualJSON(t, string(s.JSON), string(want.State))
	return s
}

// run starts c.Run as h's client; the returned cancel (also h.cancel) ends it, and h.done
// receives what Run returned.
func (h *harness) run(c *Client) context.CancelFunc {
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- c.Run(ctx) }()
	return cancel
}

// liveClient starts a client on gw (tweak as for startClient), subscribes it to match
// and waits for its connection and for the match's snapshot as its state.
func liveClient(t *testing.T, gw *fakeGW, match string, tweak func(*Options)) (*harness, *fakeConn) {
	t.Helper()
	h := startClient(t, gw, tweak)
	h.subscribe(t, match)
	conn := gw.waitConn(t)
	h.waitState(t, gw.snap(match))
	return h, conn
}

// checkedClient starts a client on gw, observed by a fresh Checker, subscribes it to
// match and waits for its connection.
func checkedClient(t *testing.T, gw *fakeGW, match string) (*harness, *Checker, *fakeConn) {
	t.Helper()
	chk := NewChecker()
	h := startClient(t, gw, func(o *Options) { o.Observer = chk })
	h.subscribe(t, match)
	return h, chk, gw.waitConn(t)
}
