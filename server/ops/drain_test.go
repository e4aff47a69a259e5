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
)

// drainClient is what one client saw of a drain.
type drainClient struct {
	afterMS   int64         // of its reconnect frame; -1 if none came
	reconnAt  time.Duration // when reconnect arrived, from the drain's start
	closeCode int
	closedAt  time.Duration
	lastSeq   uint64
	err       error
}

// TestDrain2000 connects 2,000 subscribed clients, publishes deltas at 20/s and drains
// with a 3 s window. Every client must get `reconnect` with after_ms inside the window,
// the after_ms spread evenly (each quarter of the window 15-35% of the clients), then a
// 1012 close near its after_ms, with every delta before it in order and every frame
// whole. During the drain /readyz is 503, /healthz 200, and a new handshake gets 503 with
// Retry-After 1-5. Drain returns (the server stopped) well within window + grace. This is
// the paced drain (RestartGap off), for clients that have other gateways to go to;
// restart_test.go has the restart in place.
func TestDrain2000(t *testing.T) {
	const (
		n      = 2000
		window = 3 * time.Second
		grace  = 5 * time.Second
	)
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 2, DrainWindow: window, DrainGrace: grace, RestartGap: -1})
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
	// parse under the race detector).
	stopPub := make(chan struct{})
	pubDone := make(chan struct{})
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
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)

	results := make([]drainClient, n)
	var start time.Time
	startSet := make(chan struct{})
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := &results[i]
			r.afterMS = -1
			deadline := time.Now().Add(window + grace + 5*time.Second)
			for {
				f, err := c.Next(deadline)
				if err != nil {
					r.err = err
					return
				}
				switch {
				case f.Close != 0:
					<-startSet
					r.closeCode, r.closedAt = f.Close, time.Since(start)
					return
				case f.Type == "delta":
					if f.Seq != r.lastSeq+1 && r.lastSeq != 0 {
						r.err = fmt.Errorf("seq %d after %d", f.Seq, r.lastSeq)
						return
					}
					r.lastSeq = f.Seq
				case f.Type == "reconnect":
					<-startSet
					r.afterMS, r.reconnAt = f.AfterMS, time.Since(start)
				default:
					r.err = fmt.Errorf("unexpected %s", f.Raw)
					return
				}
			}
		}()
	}

	// The machine is shared: how long this process was starved bounds how late it can
	// see a frame, so that allowance is added to the timing bounds below.
	stall := watchStalls(t)
	start = time.Now()
	close(startSet)
	drained := make(chan time.Duration, 1)
	go func() { s.Drain(context.Background()); drained <- time.Since(start) }()

	// During the drain: readiness, liveness, refusals, metrics.
	time.Sleep(300 * time.Millisecond)
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

	var took time.Duration
	select {
	case took = <-drained:
	case <-time.After(window + grace + 3*time.Second):
		t.Fatal("Drain did not return within window + grace")
	}
	close(stopPub)
	<-pubDone
	readers.Wait()
	select {
	case <-s.Done():
	default:
		t.Fatal("server not stopped after Drain returned")
	}

	starved := stall()
	// Every client: reconnect, then 1012 near its after_ms, no error, no partial frame.
	var quarters [4]int
	var after []int64
	var worstEarly, worstLate time.Duration
	var lateReconnect time.Duration
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
			d := r.closedAt - due
			worstEarly, worstLate = min(worstEarly, d), max(worstLate, d)
			lateReconnect = max(lateReconnect, r.reconnAt)
			if d < -100*time.Millisecond || d > 1500*time.Millisecond+starved {
				bad++
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
		t.Errorf("%d clients closed more than 100 ms before or 1.5 s (+%v starved) after their after_ms (worst %v / +%v)", bad, starved, worstEarly, worstLate)
	}
	for q, c := range quarters {
		if share := float64(c) / n; share < 0.15 || share > 0.35 {
			t.Errorf("quarter %d of the window holds %.1f%% of the after_ms, want 15-35%%: %v", q, 100*share, quarters)
		}
	}
	sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
	if len(after) > 0 {
		t.Logf("2,000 clients: after_ms %d..%d, quarters %v; close - after_ms in [%v, +%v]; last reconnect frame at %v; Drain returned after %v; this process starved up to %v",
			after[0], after[len(after)-1], quarters, worstEarly, worstLate, lateReconnect, took, starved)
	}
	if lateReconnect > 2*time.Second+starved {
		t.Errorf("a reconnect frame arrived %v after the drain began", lateReconnect)
	}
	if took > window+grace {
		t.Errorf("Drain took %v, more than window + grace", took)
	}
}

// watchStalls samples a 10 ms ticker until the returned function is called, which
// gives the longest the ticker was late: how long this process went without CPU.
func watchStalls(t testing.TB) func() time.Duration {
	stop := make(chan struct{})
	res := make(chan time.Duration, 1)
	go func() {
		var worst time.Duration
		prev := time.Now()
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				res <- worst
				return
			case now := <-tk.C:
				worst = max(worst, now.Sub(prev)-10*time.Millisecond)
				prev = now
			}
		}
	}()
	return func() time.Duration { close(stop); return <-res }
}
