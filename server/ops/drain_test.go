package ops_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// drainClient is what one client saw of a drain.
type drainClient struct {
	afterMS   int64         // of its reconnect frame; -1 if none came
	closeCode int           // of its close frame
	closedAt  time.Duration // the shard clock, from the drain's start, when the close arrived
	lastSeq   uint64
	err       error
}

// TestDrain2000 connects 2,000 subscribed clients, publishes deltas at 5/s and drains
// with a 3 s window on the shard clock (a servertest.Clock), which the test moves in
// 100 ms steps, so that what is checked is the schedule itself, whatever the load of
// the machine: every client gets `reconnect` at once with after_ms inside the window,
// the after_ms spread evenly (each quarter of the window 15-35% of the clients), then a
// 1012 close exactly in the first step at or after its after_ms, never earlier, with
// every delta before it in order and every frame whole. During the drain /readyz is
// 503, /healthz 200, and a new handshake gets 503 with Retry-After 1-5. Drain returns
// (the server stopped) once the last client is closed. This is the paced drain
// (RestartGap off), for clients that have other gateways to go to; restart_test.go has
// the restart in place.
func TestDrain2000(t *testing.T) {
	const (
		n      = 2000
		window = 3 * time.Second
		step   = 100 * time.Millisecond
	)
	b := bus.NewEmbedded()
	clock := servertest.NewClock()
	// The grace is real time: far beyond what stepping the clock through the window takes.
	s := servertest.Run(t, server.Options{Bus: b, Loops: 2, DrainWindow: window, DrainGrace: 2 * time.Minute, RestartGap: -1,
		Shard: shard.Options{Now: clock.Now}})
	addr := s.WSAddr().String()

	conns := make([]*wsConn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				c, resp, err := servertest.DialWS(addr, "/ws?match=m1", nil, "")
				if err == nil && c == nil {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				if err == nil {
					for _, typ := range []string{"hello", "subscribed"} {
						var f frame
						if f, err = c.Next(time.Now().Add(10 * time.Second)); err == nil && f.Type != typ {
							err = fmt.Errorf("got %s, want %s", f.Raw, typ)
						}
						if err != nil {
							break
						}
					}
				}
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if got := s.Conns(); got != n {
		t.Fatalf("server holds %d connections, want %d", got, n)
	}

	// Publish at 5/s until the drain is over (2,000 frames per delta for this process to
	// parse under the race detector); the drain starts once deltas are flowing.
	stopPub := make(chan struct{})
	pubDone := make(chan struct{})
	var published atomic.Int64
	p := newPublisher(b)
	go func() {
		defer close(pubDone)
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopPub:
				return
			case <-tk.C:
				if err := p.delta("m1", "high"); err != nil {
					return
				}
				published.Add(1)
			}
		}
	}()
	servertest.Eventually(t, 10*time.Second, servertest.Cond("two deltas published", func() bool { return published.Load() >= 2 }))

	start := clock.Now()
	results := make([]drainClient, n)
	var reconnects atomic.Int64
	closed := make([]atomic.Bool, n)
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := &results[i]
			r.afterMS = -1
			for {
				f, err := c.Next(time.Now().Add(time.Minute))
				if err != nil {
					r.err = err
					return
				}
				switch {
				case f.Close != 0:
					r.closeCode, r.closedAt = f.Close, clock.Now().Sub(start)
					closed[i].Store(true)
					return
				case f.Type == "delta":
					if f.Seq != r.lastSeq+1 && r.lastSeq != 0 {
						r.err = fmt.Errorf("seq %d after %d", f.Seq, r.lastSeq)
						return
					}
					r.lastSeq = f.Seq
				case f.Type == "reconnect":
					r.afterMS = f.AfterMS
					reconnects.Add(1)
				default:
					r.err = fmt.Errorf("unexpected %s", f.Raw)
					return
				}
			}
		}()
	}

	drained := make(chan struct{})
	go func() { s.Drain(context.Background()); close(drained) }()
	// Every reconnect comes at once: the clock has not moved.
	servertest.Eventually(t, 30*time.Second, func() error {
		if got := reconnects.Load(); got != n {
			return fmt.Errorf("%d of %d reconnect frames", got, n)
		}
		return nil
	})
	afterMS := make([]int64, n) // read while the readers go on writing their results
	for i := range results {
		afterMS[i] = results[i].afterMS
	}

	// During the drain: readiness, liveness, refusals, metrics.
	base := servertest.HTTPURL(s)
	if code, _, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d during the drain, want 503", code)
	}
	if code, _, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d during the drain, want 200", code)
	}
	for range 3 {
		c, resp, err := servertest.DialWS(addr, "/ws?match=m1", nil, "")
		if c != nil {
			c.Close()
			t.Fatal("a handshake was upgraded during the drain")
		}
		if err != nil {
			t.Fatalf("handshake during the drain: %v", err)
		}
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusServiceUnavailable || ra < 1 || ra > 5 {
			t.Fatalf("handshake during the drain: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	m := servertest.Scrape(t, servertest.HTTPURL(s))
	if m[`crease_draining`] != 1 || m[`crease_handshakes_total{result="draining"}`] != 3 {
		t.Errorf("during the drain: draining %v, handshakes refused as draining %v", m[`crease_draining`], m[`crease_handshakes_total{result="draining"}`])
	}

	// Step through the window: after each step, every client whose after_ms has passed
	// is closed (and none other, checked below from when each close arrived).
	for at := step; at <= window+step; at += step {
		clock.Advance(step)
		servertest.Eventually(t, 30*time.Second, func() error {
			for i, a := range afterMS {
				// Its after_ms, truncated to whole ms, is certainly past: its close must
				// arrive before the clock moves on.
				if time.Duration(a+1)*time.Millisecond <= at && !closed[i].Load() {
					return fmt.Errorf("at %v of the window: client %d (after_ms %d) not closed", at, i, a)
				}
			}
			return nil
		})
	}
	select {
	case <-drained:
	case <-time.After(30 * time.Second):
		t.Fatal("Drain did not return once every client was closed")
	}
	close(stopPub)
	<-pubDone
	readers.Wait()
	select {
	case <-s.Done():
	default:
		t.Fatal("server not stopped after Drain returned")
	}

	// Every client: reconnect, then 1012 in the first step at or after its after_ms, no
	// error, no partial frame.
	var quarters [4]int
	var after []int64
	bad := 0
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("client %d: %v", i, r.err)
		case r.afterMS < 0:
			t.Errorf("client %d: closed %d without reconnect", i, r.closeCode)
		case r.closeCode != 1012:
			t.Errorf("client %d: close %d, want 1012", i, r.closeCode)
		case r.afterMS <= 0 || r.afterMS > window.Milliseconds():
			t.Errorf("client %d: after_ms %d outside (0, %d]", i, r.afterMS, window.Milliseconds())
		default:
			due := time.Duration(r.afterMS) * time.Millisecond
			if r.closedAt < due || r.closedAt >= due+time.Millisecond+step {
				bad++
				if bad <= 5 {
					t.Errorf("client %d: after_ms %d, closed at %v of the window", i, r.afterMS, r.closedAt)
				}
			}
			quarters[min(3, int(4*r.afterMS/window.Milliseconds()))]++
			after = append(after, r.afterMS)
			continue
		}
		if t.Failed() && i > 20 {
			t.FailNow()
		}
	}
	if bad > 0 {
		t.Errorf("%d clients closed before their after_ms or later than the step after it", bad)
	}
	for q, c := range quarters {
		if share := float64(c) / n; share < 0.15 || share > 0.35 {
			t.Errorf("quarter %d of the window holds %.1f%% of the after_ms, want 15-35%%: %v", q, 100*share, quarters)
		}
	}
	sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
	if len(after) > 0 {
		t.Logf("2,000 clients: after_ms %d..%d, quarters %v", after[0], after[len(after)-1], quarters)
	}
}
