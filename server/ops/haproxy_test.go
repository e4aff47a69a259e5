package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"crease/bus"
	"crease/client"
	"crease/ingest"
	"crease/internal/testenv"
	"crease/server"
	"crease/server/servertest"
)

// fanBus lets several in-process gateways share one embedded bus: the embedded bus
// delivers to one sink, which hands a copy of each message to every gateway's sink.
type fanBus struct {
	*bus.Embedded
	mu    sync.Mutex
	sinks map[*busView]bus.Sink
}

func newFanBus() *fanBus {
	f := &fanBus{Embedded: bus.NewEmbedded(), sinks: map[*busView]bus.Sink{}}
	_ = f.Embedded.Start(context.Background(), f)
	return f
}

func (f *fanBus) Deliver(msg bus.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sinks {
		s.Deliver(msg) // read-only: the gateways share it
	}
}

func (f *fanBus) Dropped(match string, reason bus.DropReason) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sinks {
		s.Dropped(match, reason)
	}
}

func (f *fanBus) Lost(match string, reason bus.ResyncReason) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sinks {
		s.Lost(match, reason)
	}
}

// view is the bus.Bus of one gateway.
func (f *fanBus) view() *busView { return &busView{fanBus: f} }

type busView struct{ *fanBus }

func (v *busView) Start(_ context.Context, sink bus.Sink) error {
	v.mu.Lock()
	v.sinks[v] = sink
	v.mu.Unlock()
	return nil
}

func (v *busView) Close() error {
	v.mu.Lock()
	delete(v.sinks, v)
	v.mu.Unlock()
	return nil
}

// startHAProxy runs deploy/haproxy.cfg in the foreground in front of gws (gw1, gw2) and
// returns its public address.
func startHAProxy(t *testing.T, gws ...*server.Server) string {
	t.Helper()
	bin := testenv.LookPath(t, "haproxy", "apt-get install haproxy (make test does, via scripts/ensure-deps.sh)")
	front := servertest.FreeAddr(t)
	env := append(os.Environ(),
		"FRONT_HTTP="+front, "FRONT_WS="+servertest.FreeAddr(t), "STATS_ADDR="+servertest.FreeAddr(t),
		"GW1_WS="+gws[0].WSAddr().String(), "GW1_HTTP="+gws[0].HTTPAddr().String(),
		"GW2_WS="+gws[1].WSAddr().String(), "GW2_HTTP="+gws[1].HTTPAddr().String(),
		"HAPROXY_MAXCONN=2000", "HAPROXY_SOCKET="+filepath.Join(t.TempDir(), "admin.sock"))
	cmd := exec.Command(bin, "-db", "-f", "../../deploy/haproxy.cfg")
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	servertest.Eventually(t, 10*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("haproxy exited:\n%s", out.String())
		default:
		}
		resp, err := http.Get("http://" + front + "/healthz")
		if err != nil {
			return fmt.Errorf("haproxy not answering on %s: %w", front, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("haproxy on %s: /healthz %d", front, resp.StatusCode)
		}
		return nil
	})
	return front
}

// TestHAProxyStickinessAndDrain runs the shipped deploy/haproxy.cfg in front of two
// gateways (nodes gw1, gw2) sharing one bus with a real match replaying. A client that
// got the SRV cookie on the page load lands on that gateway on every (re)connect; when
// gw1 drains, its clients get `reconnect`, come back through HAProxy on gw2 and hold
// the same state as the snapshot.
func TestHAProxyStickinessAndDrain(t *testing.T) {
	fb := newFanBus()
	var gws []*server.Server
	for _, node := range []string{"gw1", "gw2"} {
		gws = append(gws, servertest.Run(t, server.Options{Bus: fb.view(), Loops: 1, Node: node,
			DrainWindow: 2 * time.Second, DrainGrace: 3 * time.Second}))
	}
	front := startHAProxy(t, gws...)

	matches, err := ingest.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	match := matches[0]
	ctx, cancel := context.WithCancel(context.Background())
	replayDone := make(chan struct{})
	go func() {
		defer close(replayDone)
		_ = ingest.Replay(ctx, fb.Embedded, match, ingest.ReplayOptions{Speed: 20, Loop: true})
	}()
	t.Cleanup(func() { cancel(); <-replayDone })

	// Page loads: each gets a cookie naming a gateway; get one of each.
	cookies := map[string]string{}
	for i := 0; i < 20 && len(cookies) < 2; i++ {
		resp, err := http.Get("http://" + front + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "SRV" {
				cookies[c.Value] = c.Name + "=" + c.Value
			}
		}
	}
	if cookies["gw1"] == "" || cookies["gw2"] == "" {
		t.Fatalf("page loads set cookies %v, want SRV=gw1 and SRV=gw2", cookies)
	}
	// The cookie brings every WebSocket (and every reconnect) to the same gateway.
	for _, node := range []string{"gw1", "gw2"} {
		for range 3 {
			c, resp, err := servertest.DialWS(front, "/ws?match="+match.ID(), nil, "Cookie: "+cookies[node]+"\r\n")
			if err != nil || c == nil {
				t.Fatalf("upgrade through haproxy: %v %v", resp, err)
			}
			if h := c.Expect(t, "hello"); h.Node != node {
				t.Fatalf("cookie %s landed on %s", cookies[node], h.Node)
			}
			c.Close()
		}
	}

	// Six clients of the shipped Go client, three per gateway, live on the match.
	type watcher struct {
		mu         sync.Mutex
		nodes      []string
		reconnects int
		state      client.State
	}
	ws := make([]*watcher, 6)
	runCtx, stopClients := context.WithCancel(context.Background())
	var runs sync.WaitGroup
	t.Cleanup(func() { stopClients(); runs.Wait() })
	for i := range ws {
		w := &watcher{}
		ws[i] = w
		node := []string{"gw1", "gw2"}[i%2]
		c, err := client.New(client.Options{
			URL:      "ws://" + front + "/ws",
			BaseHTTP: "http://" + front,
			Header:   http.Header{"Cookie": {cookies[node]}},
			Backoff:  client.Backoff{Base: 100 * time.Millisecond, Cap: time.Second, InitialSpread: 200 * time.Millisecond},
			Observer: observerFunc(func(raw []byte) {
				var f struct{ Type, Node string }
				if json.Unmarshal(raw, &f) != nil {
					return
				}
				w.mu.Lock()
				switch f.Type {
				case "hello":
					w.nodes = append(w.nodes, f.Node)
				case "reconnect":
					w.reconnects++
				}
				w.mu.Unlock()
			}),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(match.ID(), func(s client.State) {
			w.mu.Lock()
			w.state = s
			w.mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		runs.Add(1)
		go func() { defer runs.Done(); _ = c.Run(runCtx) }()
	}
	servertest.Eventually(t, 10*time.Second, servertest.Cond("six clients live on their cookie's gateway", func() bool {
		for i, w := range ws {
			w.mu.Lock()
			ok := len(w.nodes) == 1 && w.nodes[0] == []string{"gw1", "gw2"}[i%2] && w.state.Seq > 0
			w.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	}))

	// gw1 drains: its clients move to gw2 through HAProxy.
	drained := make(chan struct{})
	go func() { gws[0].Drain(context.Background()); close(drained) }()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("gw1 did not finish draining within window + grace")
	}
	servertest.Eventually(t, 15*time.Second, servertest.Cond("every client on gw2", func() bool {
		for _, w := range ws {
			w.mu.Lock()
			last := w.nodes[len(w.nodes)-1]
			w.mu.Unlock()
			if last != "gw2" {
				return false
			}
		}
		return true
	}))
	// Stop publishing; every client converges to the snapshot.
	cancel()
	<-replayDone
	snap, err := fb.Snapshot(context.Background(), match.ID())
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Seq   uint64          `json:"seq"`
		State json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(snap.Raw, &want); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 10*time.Second, servertest.Cond("every client at the snapshot's seq", func() bool {
		for _, w := range ws {
			w.mu.Lock()
			seq := w.state.Seq
			w.mu.Unlock()
			if seq != want.Seq {
				return false
			}
		}
		return true
	}))
	for i, w := range ws {
		w.mu.Lock()
		if wantR := 1 - i%2; w.reconnects != wantR {
			t.Errorf("client %d: %d reconnect frames, want %d", i, w.reconnects, wantR)
		}
		if !jsonEqual(t, w.state.JSON, want.State) {
			t.Errorf("client %d: state at seq %d differs from the snapshot", i, w.state.Seq)
		}
		t.Logf("client %d: hello from %s; at seq %d", i, strings.Join(w.nodes, " → "), w.state.Seq)
		w.mu.Unlock()
	}
}

func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// observerFunc is a client.Observer that looks at frames only.
type observerFunc func(raw []byte)

func (f observerFunc) Connected()               {}
func (f observerFunc) Frame(raw []byte)         { f(raw) }
func (f observerFunc) SnapshotRequested(string) {}
func (f observerFunc) Snapshot(client.Snapshot) {}
