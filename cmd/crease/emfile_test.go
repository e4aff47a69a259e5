package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crease/ingest"
	"crease/internal/testenv"
	"crease/server/servertest"
)

// prlimit is the path of util-linux's prlimit(1), which runs crease under a descriptor
// limit.
func prlimit(t *testing.T) string {
	t.Helper()
	return testenv.LookPath(t, "prlimit", "apt-get install util-linux")
}

// TestEMFILEDoesNotKillTheGateway runs `crease demo` (real matches replaying) under a
// 200-descriptor limit with --max-conns far above it, so that accept(2) really fails
// with EMFILE. 150 subscribed clients connect, then 200 more push it past the limit:
// the process must not spin (CPU over 2 s < 20% of a core), the 150 keep receiving
// deltas, crease_accept_errors_total{errno="EMFILE"} counts the failures, and once the
// extra connections are gone new clients are accepted again.
func TestEMFILEDoesNotKillTheGateway(t *testing.T) {
	prl := prlimit(t)
	matches, err := ingest.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	match := matches[0].ID()
	p := startCrease(t, []string{prl, "--nofile=200:200"}, "demo", "--log-level=warn",
		"--loops=2", "--speed=20", "--sim=0", "--max-conns=100000")
	pid := p.cmd.Process.Pid
	// One kept-alive HTTP connection for the scrapes: a new one could not be accepted
	// while descriptors are exhausted.
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
	metricsURL := "http://" + p.http + "/metrics"
	servertest.ScrapeURL(t, hc, metricsURL)
	base := openFDs(pid)

	const keep, extra = 150, 200
	conns := connectMany(t, p.ws, "/ws?match="+match, keep, true)
	t.Logf("descriptors: %d at start, %d with %d clients (limit 200)", base, openFDs(pid), keep)

	// The 150 count the deltas they get from now on.
	var got [keep]atomic.Int64
	var readErr atomic.Value
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				f, err := c.Next(time.Now().Add(30 * time.Second))
				if err != nil {
					select {
					case <-stop:
					default:
						readErr.Store(fmt.Errorf("client %d: %w", i, err))
					}
					return
				}
				if f.Type == "delta" {
					got[i].Add(1)
				}
			}
		}()
	}

	// Past the limit: connections the kernel completes but the process cannot accept.
	var extras []net.Conn
	for range extra {
		nc, err := net.DialTimeout("tcp", p.ws, 2*time.Second)
		if err != nil {
			continue
		}
		_, _ = io.WriteString(nc, servertest.UpgradeRequest("/ws"))
		extras = append(extras, nc)
	}
	servertest.Eventually(t, 10*time.Second, func() error { // the gateway is out of descriptors
		if n := servertest.ScrapeURL(t, hc, metricsURL)[`crease_accept_errors_total{errno="EMFILE"}`]; n < 1 {
			return fmt.Errorf("%v EMFILE accept errors", n)
		}
		return nil
	})
	before := make([]int64, keep)
	for i := range got {
		before[i] = got[i].Load()
	}
	c0 := cpuTicks(t, pid)
	time.Sleep(2 * time.Second)
	cpu := float64(cpuTicks(t, pid)-c0) / 100 / 2
	m := servertest.ScrapeURL(t, hc, metricsURL)
	emfile := m[`crease_accept_errors_total{errno="EMFILE"}`]
	starved := 0
	for i := range got {
		if got[i].Load() == before[i] {
			starved++
		}
	}
	t.Logf("past the limit (%d extra dialed, %d fds open): CPU %.1f%% of a core over 2 s, EMFILE errors %v, refused %v, %d of %d clients without a delta in those 2 s",
		len(extras), openFDs(pid), 100*cpu, emfile, m[`crease_handshakes_total{result="overloaded"}`], starved, keep)
	if emfile < 1 {
		t.Errorf("crease_accept_errors_total{errno=\"EMFILE\"} = %v: the limit was never hit", emfile)
	}
	if cpu > 0.20 {
		t.Errorf("CPU %.0f%% of a core while out of descriptors: busy loop?", 100*cpu)
	}
	if starved > 0 {
		t.Errorf("%d existing clients got no delta while the process was out of descriptors", starved)
	}
	if e := readErr.Load(); e != nil {
		t.Errorf("an existing client failed: %v", e)
	}

	// Free the descriptors: new clients get in again.
	for _, nc := range extras {
		nc.Close()
	}
	servertest.Eventually(t, 15*time.Second, func() error {
		c, resp, err := servertest.DialWS(p.ws, "/ws?match="+match, nil, "")
		if c == nil {
			return fmt.Errorf("no new client accepted after the extra connections closed: %v %v", resp, err)
		}
		f, err := c.Next(time.Now().Add(5 * time.Second))
		c.Close()
		if err != nil || f.Type != "hello" {
			t.Fatalf("after recovery: %s %v", f.Raw, err)
		}
		return nil
	})
	close(stop)
	for _, c := range conns {
		c.Close()
	}
	readers.Wait()
	select {
	case <-p.exited:
		t.Fatalf("crease exited: %v", p.exitErr)
	default:
	}
}

// TestDefaultMaxConnsRefusesBeforeEMFILE: without --max-conns the cap is RLIMIT_NOFILE
// minus the reserve (256): under a 300-descriptor limit that is 44 connections, and the
// next handshakes are refused with 503 (over_capacity) before accept ever fails.
func TestDefaultMaxConnsRefusesBeforeEMFILE(t *testing.T) {
	prl := prlimit(t)
	const limit, reserve = 300, 256
	const capConns = limit - reserve
	p := startCrease(t, []string{prl, fmt.Sprintf("--nofile=%d:%d", limit, limit)}, "serve", "--log-level=warn", "--loops=2")
	connectMany(t, p.ws, "/ws", capConns, false)
	refused := 0
	for range 20 {
		c, resp, err := servertest.DialWS(p.ws, "/ws", nil, "")
		if err != nil {
			t.Fatalf("over the cap: %v", err)
		}
		if c != nil {
			t.Cleanup(func() { c.Close() })
			t.Fatalf("upgraded beyond the default cap of %d", capConns)
		}
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("over the cap: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		refused++
	}
	m := servertest.ScrapeURL(t, http.DefaultClient, "http://"+p.http+"/metrics")
	if m[`crease_accept_errors_total{errno="EMFILE"}`] != 0 || m[`crease_handshakes_total{result="over_capacity"}`] != float64(refused) {
		t.Fatalf("EMFILE %v, over_capacity %v (want 0, %d)", m[`crease_accept_errors_total{errno="EMFILE"}`],
			m[`crease_handshakes_total{result="over_capacity"}`], refused)
	}
	t.Logf("limit %d: %d connections held, %d refused 503 over_capacity, no EMFILE, %d fds open", limit, capConns, refused, openFDs(p.cmd.Process.Pid))
}
