package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/gorilla/websocket"
)

// fakeGW is a small gateway of PROTOCOL.md driven by the test: it holds the match
// snapshots (the publisher's side too), serves /ws and /v1/matches/{id}, and delivers
// published deltas to the connections subscribed to the match.
type fakeGW struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex // orders publishing against subscribing
	snaps     map[string]Snapshot
	conns     []*fakeConn
	dialTimes []time.Time
	refuse    int // answer the next n dials 503

	heartbeat  float64
	pingEvery  time.Duration // 0: the fake never pings
	pongs      atomic.Int32
	connCh     chan *fakeConn
	snapGets   atomic.Int32
	snapFail   atomic.Int32       // answer the next n snapshot GETs 500
	afterSnap  func(match string) // called after the snapshot is read, before it is sent
	afterSnapM sync.Mutex
}

type fakeConn struct {
	gw     *fakeGW
	ws     *websocket.Conn
	wmu    sync.Mutex
	subs   map[string]bool // guarded by gw.mu
	ops    chan map[string]string
	closed chan struct{}
	// closeCode is the close code the client sent (0: none), valid once closed is closed.
	closeCode int
}

func newFakeGW(t *testing.T) *fakeGW {
	gw := &fakeGW{t: t, snaps: map[string]Snapshot{}, connCh: make(chan *fakeConn, 16)}
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
	if gw.snapFail.Add(-1) >= 0 {
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	id := r.PathValue("id")
	gw.mu.Lock()
	s, ok := gw.snaps[id]
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
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, s.Seq))
	json.NewEncoder(w).Encode(s)
}

func (gw *fakeGW) serveWS(w http.ResponseWriter, r *http.Request) {
	gw.mu.Lock()
	gw.dialTimes = append(gw.dialTimes, time.Now())
	if gw.refuse > 0 {
		gw.refuse--
		gw.mu.Unlock()
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	gw.mu.Unlock()
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &fakeConn{gw: gw, ws: ws, subs: map[string]bool{}, ops: make(chan map[string]string, 64), closed: make(chan struct{})}
	gw.mu.Lock()
	gw.conns = append(gw.conns, c)
	gw.mu.Unlock()
	c.send(map[string]any{"type": "hello", "node": "fake", "heartbeat_s": gw.heartbeat})
	gw.connCh <- c
	defer close(c.closed)
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
		var op map[string]string
		if json.Unmarshal(data, &op) != nil {
			c.send(map[string]any{"type": "error", "code": "bad_request", "message": "not JSON"})
			continue
		}
		switch op["op"] {
		case "subscribe":
			gw.mu.Lock() // deltas published from now on reach this connection
			c.subs[op["match"]] = true
			c.send(map[string]any{"type": "subscribed", "match": op["match"]})
			gw.mu.Unlock()
		case "unsubscribe":
			gw.mu.Lock()
			delete(c.subs, op["match"])
			gw.mu.Unlock()
		}
		c.ops <- op
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
			if o["op"] == op {
				delete(missing, o["match"])
			}
		case <-timeout:
			t.Fatalf("no %s %v from the client", op, missing)
		}
	}
}

func (gw *fakeGW) waitConn(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-gw.connCh:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

// setSnap sets the stored state of match without publishing.
func (gw *fakeGW) setSnap(match string, seq uint64, state string) {
	gw.mu.Lock()
	gw.snaps[match] = Snapshot{Match: match, Seq: seq, State: json.RawMessage(state)}
	gw.mu.Unlock()
}

func (gw *fakeGW) snap(match string) Snapshot {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	return gw.snaps[match]
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
	if deliver {
		frame := fmt.Sprintf(`{"type":"delta","match":%q,"seq":%d,"prio":"high","ts":%d,"patch":%s}`, match, s.Seq, time.Now().UnixMicro(), patch)
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
	h := &harness{states: make(chan State, 4096), status: make(chan Status, 256), done: make(chan error, 1)}
	opts := Options{
		URL:      gw.wsURL(),
		BaseHTTP: gw.srv.URL,
		Backoff:  Backoff{Base: 10 * time.Millisecond, Cap: 200 * time.Millisecond, InitialSpread: 20 * time.Millisecond},
		Rand:     func() float64 { return 0.5 },
		OnStatus: func(s Status) { h.status <- s },
	}
	if tweak != nil {
		tweak(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- c.Run(ctx) }()
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
	timeout := time.After(5 * time.Second)
	for {
		select {
		case s := <-h.states:
			if s.Match != want.Match || s.Seq < want.Seq {
				continue
			}
			if s.Seq > want.Seq {
				t.Fatalf("state of %s jumped to seq %d past %d", s.Match, s.Seq, want.Seq)
			}
			mustEqualJSON(t, string(s.JSON), string(want.State))
			return s
		case <-timeout:
			t.Fatalf("no state of %s at seq %d", want.Match, want.Seq)
		}
	}
}

// waitStatus waits for a status of the given phase and returns it.
func (h *harness) waitStatus(t *testing.T, p Phase) Status {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case s := <-h.status:
			if s.Phase == p {
				return s
			}
		case <-timeout:
			t.Fatalf("no status %v", p)
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
	timeout := time.After(5 * time.Second)
	for {
		select {
		case s := <-h.states:
			if s.Match == want.Match && s.Seq == want.Seq {
				mustEqualJSON(t, string(s.JSON), string(want.State))
				return
			}
		case <-timeout:
			t.Fatalf("no state of %s at seq %d", want.Match, want.Seq)
		}
	}
}
