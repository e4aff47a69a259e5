package ops_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
)

// TestAdmissionStorm fires 3,000 simultaneous handshakes at a gateway admitting 500/s
// (burst 500) while 20 subscribed clients receive deltas published at 20/s. The excess
// is refused with 503 and Retry-After 1-5 (and counted as overloaded), about burst +
// rate × duration are admitted, and the subscribers get every delta in order without a
// stall.
func TestAdmissionStorm(t *testing.T) {
	const (
		storm       = 3000
		subscribers = 20
		rate, burst = 500, 500
	)
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 2, HandshakeRate: rate, HandshakeBurst: burst})
	addr := s.WSAddr().String()

	subs := dialSubscribed(t, addr, "live", subscribers)

	// Subscribers: every delta in order, and the longest silence between two.
	p := newPublisher(b)
	stop := make(chan struct{})
	var published atomic.Uint64
	var pubWG, subWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if err := p.delta("live", "normal"); err != nil {
					t.Error(err)
					return
				}
				published.Add(1)
			}
		}
	}()
	type subResult struct {
		last    uint64
		longest time.Duration
		err     error
	}
	subRes := make([]subResult, subscribers)
	lastSeq := make([]atomic.Uint64, subscribers) // subRes[i].last, for waiting on it
	for i, c := range subs {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			r := &subRes[i]
			prev := time.Now()
			for {
				f, err := c.Next(time.Now().Add(3 * time.Second))
				if err != nil {
					select {
					case <-stop:
					default:
						r.err = err
					}
					return
				}
				if f.Type != "delta" {
					r.err = fmt.Errorf("unexpected %s", f.Raw)
					return
				}
				if r.last != 0 && f.Seq != r.last+1 {
					r.err = fmt.Errorf("seq %d after %d", f.Seq, r.last)
					return
				}
				now := time.Now()
				if r.last != 0 {
					r.longest = max(r.longest, now.Sub(prev))
				}
				r.last, prev = f.Seq, now
				lastSeq[i].Store(f.Seq)
			}
		}()
	}
	// Every subscriber has deltas flowing before the storm, and after it.
	flowing := func(from uint64) func() error {
		return func() error {
			for i := range lastSeq {
				if got := lastSeq[i].Load(); got < from+2 {
					return fmt.Errorf("subscriber %d at seq %d, want at least %d", i, got, from+2)
				}
			}
			return nil
		}
	}
	servertest.Eventually(t, 10*time.Second, flowing(0))

	// The storm.
	type outcome struct {
		upgraded   bool
		status     int
		retryAfter string
		err        error
	}
	outs := make([]outcome, storm)
	var ready, done sync.WaitGroup
	gate := make(chan struct{})
	ready.Add(storm)
	done.Add(storm)
	var upgradedMu sync.Mutex
	var upgraded []*wsConn
	for i := range storm {
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			c, resp, err := servertest.DialWS(addr, "/ws", nil, "")
			o := &outs[i]
			switch {
			case err != nil:
				o.err = err
			case c != nil:
				o.upgraded = true
				upgradedMu.Lock()
				upgraded = append(upgraded, c)
				upgradedMu.Unlock()
			default:
				o.status, o.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
			}
		}()
	}
	ready.Wait()
	begin := time.Now()
	close(gate)
	done.Wait()
	elapsed := time.Since(begin)
	t.Cleanup(func() {
		for _, c := range upgraded {
			c.Close()
		}
	})
	servertest.Eventually(t, 10*time.Second, flowing(published.Load()))
	close(stop)
	pubWG.Wait()
	subWG.Wait()

	var ok, refused, closed int
	retry := map[string]int{}
	var firstErr error
	for _, o := range outs {
		switch {
		case o.upgraded:
			ok++
		case o.err != nil:
			closed++
			if firstErr == nil {
				firstErr = o.err
			}
		case o.status == http.StatusServiceUnavailable:
			refused++
			retry[o.retryAfter]++
			if ra, err := strconv.Atoi(o.retryAfter); err != nil || ra < 1 || ra > 5 {
				t.Errorf("503 with Retry-After %q", o.retryAfter)
			}
		default:
			t.Errorf("storm handshake answered %d", o.status)
		}
	}
	m := servertest.Scrape(t, servertest.HTTPURL(s))
	overloaded := m[`crease_handshakes_total{result="overloaded"}`]
	t.Logf("storm of %d in %v: %d upgraded, %d refused 503 (Retry-After %v), %d cut without an answer (%v); overloaded counter %v",
		storm, elapsed.Round(time.Millisecond), ok, refused, retry, closed, firstErr, overloaded)
	// The subscribers took tokens of the burst, refilled at the rate since.
	minOK, maxOK := burst-subscribers, burst+int(rate*elapsed.Seconds())+20
	if ok < minOK || ok > maxOK {
		t.Errorf("%d upgraded, want %d..%d (burst - subscribers, burst + rate × %v)", ok, minOK, maxOK, elapsed)
	}
	if closed > 0 {
		t.Errorf("%d refused handshakes got no 503 (first: %v)", closed, firstErr)
	}
	if int(overloaded) != storm-ok {
		t.Errorf("crease_handshakes_total{result=\"overloaded\"} = %v, want %d", overloaded, storm-ok)
	}
	if len(retry) < 3 {
		t.Errorf("Retry-After not spread: %v", retry)
	}
	for i, r := range subRes {
		if r.err != nil {
			t.Errorf("subscriber %d: %v", i, r.err)
		}
		if r.last < p.seq["live"]-2 {
			t.Errorf("subscriber %d: last seq %d of %d", i, r.last, p.seq["live"])
		}
		// The storm's clients run in this process: on a loaded machine the whole
		// process can be starved for about as long as the storm lasts.
		if r.longest > max(time.Second, elapsed) {
			t.Errorf("subscriber %d: %v without a delta during a %v storm (published every 50 ms)", i, r.longest, elapsed)
		}
	}
	var longest time.Duration
	for _, r := range subRes {
		longest = max(longest, r.longest)
	}
	t.Logf("subscribers: %d deltas each, longest silence %v", p.seq["live"], longest)
}

// TestMaxConnsExact: MaxConns 5 admits exactly five connections; the sixth handshake
// gets 503 + Retry-After (over_capacity), and a closed connection frees its place.
func TestMaxConnsExact(t *testing.T) {
	s := servertest.Run(t, server.Options{Loops: 2, MaxConns: 5})
	addr := s.WSAddr().String()
	var conns []*wsConn
	for i := range 5 {
		c, resp, err := servertest.DialWS(addr, "/ws", nil, "")
		if err != nil || c == nil {
			t.Fatalf("connection %d: %v %v", i+1, resp, err)
		}
		t.Cleanup(func() { c.Close() })
		c.Expect(t, "hello")
		conns = append(conns, c)
	}
	c, resp, err := servertest.DialWS(addr, "/ws", nil, "")
	if err != nil || c != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("sixth connection: upgraded=%v %v %v", c != nil, resp, err)
	}
	if v := servertest.Scrape(t, servertest.HTTPURL(s))[`crease_handshakes_total{result="over_capacity"}`]; v != 1 {
		t.Fatalf("over_capacity %v, want 1", v)
	}
	conns[0].Close()
	servertest.Eventually(t, 5*time.Second, servertest.Cond("a place freed by a close", func() bool {
		c, _, err := servertest.DialWS(addr, "/ws", nil, "")
		if err != nil || c == nil {
			return false
		}
		c.Close()
		return true
	}))
}
