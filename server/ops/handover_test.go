package ops_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
)

// TestHandoverWithReusePort restarts a gateway on one host the way deploy/README.md
// describes: a successor binds the same ports with ReusePort, then the old gateway
// drains. Every client gets `reconnect`, closes, waits after_ms and dials the same
// address again: each must be upgraded by the successor (its hello names it), none
// refused, and the shared HTTP port must answer /readyz 200 (the successor) while the
// old gateway drains.
func TestHandoverWithReusePort(t *testing.T) {
	const (
		n      = 300
		window = 1500 * time.Millisecond
	)
	old := servertest.Run(t, server.Options{Loops: 2, ReusePort: true, DrainWindow: window, Node: "old"})
	wsAddr, httpAddr := old.WSAddr().String(), old.HTTPAddr().String()

	conns := make([]*wsConn, n)
	for i := range conns {
		c, resp, err := servertest.DialWS(wsAddr, "/ws?match=m1", nil, "")
		if err != nil || c == nil {
			t.Fatalf("client %d: %v %v", i, err, resp)
		}
		if h := c.Expect(t, "hello"); h.Node != "old" {
			t.Fatalf("client %d: hello from %q before the successor started", i, h.Node)
		}
		c.Expect(t, "subscribed")
		conns[i] = c
	}

	successor := servertest.Run(t, server.Options{Loops: 2, ReusePort: true, WSAddr: wsAddr, HTTPAddr: httpAddr, Node: "new"})
	drained := make(chan struct{})
	go func() { defer close(drained); old.Drain(context.Background()) }()

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		refused []string
		nodes   = map[string]int{}
		// reconnecting is closed when the first reconnect frame arrives: the old
		// gateway has closed its listeners by then. A connection still in the old
		// listener's accept queue when it closes is reset by the kernel (unless
		// net.ipv4.tcp_migrate_req is set), so the checks below start after it.
		reconnecting = make(chan struct{})
		once         sync.Once
	)
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(f string, a ...any) {
				mu.Lock()
				refused = append(refused, fmt.Sprintf("client %d: ", i)+fmt.Sprintf(f, a...))
				mu.Unlock()
			}
			f, err := c.Next(time.Now().Add(5 * time.Second))
			c.Close()
			if err != nil || f.Type != "reconnect" {
				fail("got %q (close %d, %v), want reconnect", f.Raw, f.Close, err)
				return
			}
			once.Do(func() { close(reconnecting) })
			time.Sleep(time.Duration(f.AfterMS) * time.Millisecond)
			nc, resp, err := servertest.DialWS(wsAddr, "/ws?match=m1", nil, "")
			if err != nil {
				fail("reconnect: %v", err)
				return
			}
			if nc == nil {
				fail("reconnect: status %d", resp.StatusCode)
				return
			}
			defer nc.Close()
			h, err := nc.Next(time.Now().Add(5 * time.Second))
			if err != nil {
				fail("hello after reconnect: %v", err)
				return
			}
			mu.Lock()
			nodes[h.Node]++
			mu.Unlock()
		}()
	}
	// While the old gateway drains, the shared HTTP port is the successor's.
	select {
	case <-reconnecting:
	case <-time.After(10 * time.Second):
		t.Fatal("no client got reconnect")
	}
	for range 20 {
		if code, _, body := get(t, "http://"+httpAddr+"/readyz"); code != http.StatusOK {
			t.Errorf("/readyz on the shared port during the handover: %d %q", code, body)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	for _, r := range refused {
		t.Error(r)
	}
	if nodes["new"] != n {
		t.Errorf("reconnected clients by gateway %v, want all %d on the successor", nodes, n)
	}
	t.Logf("%d clients moved to the successor in %v (drain window %v)", nodes["new"], time.Since(start).Round(time.Millisecond), window)
	select {
	case <-drained:
	case <-time.After(window + 10*time.Second):
		t.Fatal("the old gateway did not finish its drain")
	}
	// The successor keeps serving after the old gateway is gone.
	c, _, err := servertest.DialWS(wsAddr, "/ws?match=m1", nil, "")
	if err != nil || c == nil {
		t.Fatalf("dial after the handover: %v", err)
	}
	defer c.Close()
	if h := c.Expect(t, "hello"); h.Node != "new" {
		t.Errorf("hello from %q after the handover", h.Node)
	}
	servertest.Eventually(t, 5*time.Second, servertest.Cond("reconnected clients' connections closed", func() bool { return successor.Conns() == 1 }))
}

// TestReusePortIsNeededToShare: a gateway bound without ReusePort keeps its ports to
// itself, so a second one (with or without ReusePort) fails to start instead of
// silently sharing them.
func TestReusePortIsNeededToShare(t *testing.T) {
	first := servertest.Run(t, server.Options{Loops: 1})
	s, err := server.New(server.Options{Loops: 1, ReusePort: true, Bus: bus.NewEmbedded(),
		WSAddr: first.WSAddr().String(), HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(context.Background())
	if err == nil {
		s.Shutdown()
		t.Fatal("a second gateway bound the WebSocket port of one started without ReusePort")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("start error %v, want EADDRINUSE", err)
	}
}
