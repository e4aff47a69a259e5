package ops_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"

	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// TestDrainRestartInPlace stops a gateway the plain way and starts another on the same
// ports once it has exited, as `systemctl restart` does. Every client gets `reconnect`
// with after_ms past the restart gap (within the drain window after it); those that
// ignore the hint are closed with 1012 within the gap's first half (on the shard clock,
// which the test moves), so the old gateway is gone before anyone returns; and every
// client that returns at its after_ms once the new gateway listens is upgraded by it at
// the first attempt.
func TestDrainRestartInPlace(t *testing.T) {
	const (
		n      = 200
		gap    = 3 * time.Second
		window = time.Second
	)
	clock := servertest.NewClock()
	old := servertest.Run(t, server.Options{Loops: 2, DrainWindow: window, RestartGap: gap, Node: "old",
		Shard: shard.Options{Now: clock.Now}})
	wsAddr, httpAddr := old.WSAddr().String(), old.HTTPAddr().String()
	conns := dialSubscribed(t, wsAddr, "m1", n)

	start := time.Now()
	drained := make(chan time.Duration, 1)
	go func() { old.Drain(context.Background()); drained <- time.Since(start) }()

	// Even clients follow the protocol (close at once, come back after after_ms); odd
	// ones ignore the hint and wait for the gateway's close.
	type seen struct {
		after time.Duration
		err   error
	}
	var hinted atomic.Int64 // clients that got their reconnect
	got := make([]seen, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := c.Next(time.Now().Add(10 * time.Second))
			if err != nil || f.Type != "reconnect" {
				got[i].err = err
				if err == nil {
					got[i].err = io.ErrUnexpectedEOF
				}
				return
			}
			got[i].after = time.Duration(f.AfterMS) * time.Millisecond
			hinted.Add(1)
			if i%2 == 0 {
				c.Close()
				return
			}
			// Due by gap/2 on the shard clock, which stops there: a later close never
			// comes, and this read fails.
			f, err = c.Next(time.Now().Add(30 * time.Second))
			if err != nil || f.Close != 1012 {
				got[i].err = err
				if err == nil {
					got[i].err = io.ErrUnexpectedEOF
				}
			}
		}()
	}
	// Every loop has started its drain (the schedule counts from then) once every client
	// has its reconnect; then the clock moves to the end of the closes' span: a close
	// scheduled later would never come, and its client would fail below.
	servertest.Eventually(t, 30*time.Second, servertest.Cond("every client has its reconnect", func() bool { return hinted.Load() == n }))
	const step = 100 * time.Millisecond
	for at := step; at <= gap/2; at += step {
		clock.Advance(step)
	}
	wg.Wait()
	var took time.Duration
	select {
	case took = <-drained:
	case <-time.After(30 * time.Second):
		t.Fatal("Drain did not return once every connection was closed")
	}

	// The restart: the same ports, once the old gateway has stopped.
	servertest.WaitBindable(t, wsAddr)
	successor := servertest.Run(t, server.Options{Loops: 2, WSAddr: wsAddr, HTTPAddr: httpAddr, Node: "new"})
	upAt := time.Since(start)
	_ = successor

	// A returning client dials at its after_ms.
	var (
		mu       sync.Mutex
		failures []string
	)
	fail := func(f string, a ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(f, a...))
		mu.Unlock()
	}
	for i := range got {
		g := got[i]
		switch {
		case g.err != nil:
			t.Fatalf("client %d: %v", i, g.err)
		case g.after < gap || g.after > gap+window:
			t.Errorf("client %d: after_ms %v outside [%v, %v]", i, g.after, gap, gap+window)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(start.Add(g.after)))
			back := time.Since(start)
			c, resp, err := servertest.DialWS(wsAddr, "/ws?match=m1", nil, "")
			if c == nil {
				if back >= upAt { // the successor was listening: this must have worked
					fail("client %d back at %v (successor up at %v): %v %v", i, back, upAt, err, resp)
				}
				return
			}
			defer c.Close()
			if h := c.Expect(t, "hello"); h.Node != "new" {
				fail("client %d: hello from %q", i, h.Node)
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if upAt > gap {
		t.Logf("the successor came up at %v, after the first after_ms (%v): this machine is starved", upAt, gap)
	}
	t.Logf("%d clients: drain over in %v, successor up at %v, all back by %v", n, took.Round(time.Millisecond), upAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestInheritedListenersSurviveTheRestart: listening sockets held by a supervisor
// (systemd socket activation) and handed to each gateway in turn. A drain stops
// accepting at once; a client arriving between the two gateways is not refused: the
// kernel queues it, and the next gateway upgrades it, as it answers HTTP requests that
// waited too.
func TestInheritedListenersSurviveTheRestart(t *testing.T) {
	wsLn, httpLn := servertest.Listen(t), servertest.Listen(t)
	files := func() (*os.File, *os.File) {
		w, err := wsLn.File()
		if err != nil {
			t.Fatal(err)
		}
		h, err := httpLn.File()
		if err != nil {
			t.Fatal(err)
		}
		return w, h
	}
	wsAddr, httpAddr := wsLn.Addr().String(), httpLn.Addr().String()

	w, h := files()
	first := servertest.Run(t, server.Options{Loops: 2, WSListener: w, HTTPListener: h, RestartGap: time.Second, DrainWindow: time.Second, Node: "first"})
	if first.WSAddr().String() != wsAddr || first.HTTPAddr().String() != httpAddr {
		t.Fatalf("serving %v and %v, not the inherited %s and %s", first.WSAddr(), first.HTTPAddr(), wsAddr, httpAddr)
	}
	c, resp, err := servertest.DialWS(wsAddr, "/ws?match=m1", nil, "")
	if err != nil || c == nil {
		t.Fatalf("dial: %v %v", err, resp)
	}
	c.Expect(t, "hello")
	c.Expect(t, "subscribed")
	go func() {
		for {
			if _, err := c.Next(time.Now().Add(10 * time.Second)); err != nil {
				return
			}
		}
	}()
	first.Drain(context.Background())
	c.Close()

	// Between the two gateways: the connections complete (the socket still listens) and
	// their requests wait.
	ws := servertest.SendRaw(t, wsAddr, servertest.UpgradeRequest("/ws?match=m1"), "WebSocket port refused between the gateways")
	hc := servertest.SendRaw(t, httpAddr, "GET /readyz HTTP/1.1\r\nHost: crease\r\n\r\n", "HTTP port refused between the gateways")

	w, h = files()
	servertest.Run(t, server.Options{Loops: 2, WSListener: w, HTTPListener: h, Node: "second"})
	_ = ws.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(ws)
	r, err := http.ReadResponse(br, nil)
	if err != nil || r.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("the waiting handshake: %v %v", r, err)
	}
	f, err := gws.ReadFrame(br)
	var hello frame
	if err == nil {
		err = json.Unmarshal(f.Payload, &hello)
	}
	if err != nil || hello.Type != "hello" || hello.Node != "second" {
		t.Fatalf("after the waiting handshake: %q %v, want hello from the second gateway", f.Payload, err)
	}
	_ = hc.SetDeadline(time.Now().Add(10 * time.Second))
	hr, err := http.ReadResponse(bufio.NewReader(hc), nil)
	if err != nil || hr.StatusCode != http.StatusOK {
		t.Fatalf("the waiting /readyz: %v %v", hr, err)
	}
}
