package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	busredis "crease/bus/redis"
	"crease/internal/redistest"
	"crease/server/servertest"
)

// sentinelWorld is a primary, a replica and three sentinels, a built `crease serve
// --redis-sentinel` in front of them, and a reader of the store that follows the master
// too.
type sentinelWorld struct {
	matchStore
	s     *redistest.Sentinel
	addrs string // the sentinels, as --redis takes them
	gw    *proc
}

func newSentinelWorld(t *testing.T) *sentinelWorld {
	t.Helper()
	w := &sentinelWorld{s: redistest.StartSentinel(t)}
	w.addrs = strings.Join(w.s.Addrs(), ",")
	var err error
	w.store, err = busredis.New(busredis.Options{Addrs: w.s.Addrs(), Sentinel: redistest.SentinelMaster, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.store.Close() })
	w.gw = startCrease(t, nil, "serve", "--redis", w.addrs, "--redis-sentinel", redistest.SentinelMaster, "--loops", "1")
	servertest.Eventually(t, 15*time.Second, func() error {
		if code := status(t, "http://"+w.gw.http+"/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz %d", code)
		}
		return nil
	})
	w.file, w.m = matchFile(t, "1359539")
	return w
}

func status(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSentinelServeAndIngestFollowFailover: `crease serve` and `crease ingest` with
// --redis-sentinel (built binaries). The primary is killed with SIGKILL mid-match: both
// follow the promoted replica without a restart (the gateway logs the change and counts
// it, /readyz is 503 in between). Then the ingest itself is killed with SIGKILL and
// started again: it finds the match on the new master and resumes it, same epoch, next
// ball. The match ends equal to its file; no client lost a delta or saw the score go
// back.
func TestSentinelServeAndIngestFollowFailover(t *testing.T) {
	t.Parallel()
	w := newSentinelWorld(t)
	ws, hb := "ws://"+w.gw.ws+"/ws", "http://"+w.gw.http
	fs := []*follower{follow(t, ws, hb, w.m.ID()), follow(t, ws, hb, w.m.ID())}
	args := []string{"--redis", w.addrs, "--redis-sentinel", redistest.SentinelMaster, "--match", w.file, "--speed", "25"}
	p := startIngest(t, args...)
	w.waitStored(t, 20, 20*time.Second)

	old := w.s.Master()
	_, atKill := w.stored()
	old.Kill()
	fault := time.Now()
	w.s.WaitNewMaster(t, old)
	promoted := time.Since(fault)
	w.waitStored(t, atKill+1, 20*time.Second)
	resumed := time.Since(fault)
	epoch, _ := w.stored()
	t.Logf("primary killed at seq %d: replica promoted after %v, the ingest's next delta stored after %v", atKill, promoted.Round(time.Millisecond), resumed.Round(time.Millisecond))
	servertest.Eventually(t, 10*time.Second, func() error {
		if n := servertest.Metric(t, hb, "crease_bus_master_changes_total"); n != 1 {
			return fmt.Errorf("crease_bus_master_changes_total %v, want 1", n)
		}
		return nil
	})
	for name, out := range map[string]*servertest.LockedBuffer{"gateway": w.gw.out, "ingest": p.out} {
		servertest.Eventually(t, 10*time.Second, func() error {
			if !strings.Contains(out.String(), "redis master changed (failover)") {
				return fmt.Errorf("the %s did not log the new master", name)
			}
			return nil
		})
	}

	w.waitStored(t, atKill+10, 20*time.Second)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	_, before := w.stored()
	q := startIngest(t, args...)
	if err := q.wait(t, 60*time.Second); err != nil {
		t.Fatalf("restarted ingest: %v", err)
	}
	if out := q.out.String(); !strings.Contains(out, "resuming match") || !strings.Contains(out, fmt.Sprintf("after_seq=%d", before)) {
		t.Fatalf("the restarted ingest did not resume after seq %d:\n%s", before, out)
	}
	if e, _ := w.stored(); e != epoch {
		t.Fatalf("the epoch changed: %s -> %s", epoch, e)
	}
	w.verifyFinal(t, w.m.Steps(), 15*time.Second, fs...)
}

// TestSentinelPublishAPIAcrossFailover: `crease ingest --listen --redis-sentinel`, a
// provider posting a match ball by ball. The primary is killed while the replica hangs
// (SIGSTOP), so that no master exists for longer than the API's store timeout: a ball
// POSTed then is answered 503 with Retry-After and nothing is published. The replica
// comes back and is promoted; the provider retries the ball after Retry-After, and the
// API goes on from where the store is. The match ends equal to its file.
func TestSentinelPublishAPIAcrossFailover(t *testing.T) {
	t.Parallel()
	w := newSentinelWorld(t)
	f := follow(t, "ws://"+w.gw.ws+"/ws", "http://"+w.gw.http, w.m.ID())
	start, end, balls := apiFeed(t, w.m.ID())
	listen := servertest.FreeAddr(t)
	p := startIngest(t, "--redis", w.addrs, "--redis-sentinel", redistest.SentinelMaster, "--listen", listen, "--api-key", "K")
	servertest.Eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + listen + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	type answer struct {
		code       int
		retryAfter string
		body       string
	}
	post := func(method, path string, body []byte) answer {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+listen+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer K")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
	}
	path := "/v1/matches/" + w.m.ID()
	if a := post("PUT", path, start); a.code != 201 {
		t.Fatalf("PUT: %d %s", a.code, a.body)
	}
	third := len(balls) / 3
	for i, b := range balls[:third] {
		if a := post("POST", path+"/deliveries", b); a.code != 200 {
			t.Fatalf("ball %d: %d %s", i, a.code, a.body)
		}
	}

	primary, replica := w.s.Master(), w.s.Replica()
	replica.Freeze()
	t.Cleanup(replica.Thaw)
	primary.Kill()
	fault := time.Now()
	a := post("POST", path+"/deliveries", balls[third])
	if a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, "store_unavailable") {
		t.Fatalf("a ball with no master: %d %s, want 503 store_unavailable", a.code, a.body)
	}
	ra, err := strconv.Atoi(a.retryAfter)
	if err != nil || ra < 1 {
		t.Fatalf("503 with Retry-After %q, want a number of seconds ≥ 1", a.retryAfter)
	}
	t.Logf("no master: the ball answered %d after %v, Retry-After %ss", a.code, time.Since(fault).Round(time.Millisecond), a.retryAfter)
	replica.Thaw()
	// The provider retries the refused ball after Retry-After, as long as it is refused.
	var retries int
	for {
		time.Sleep(time.Duration(ra) * time.Second) // the provider honours Retry-After
		a = post("POST", path+"/deliveries", balls[third])
		if a.code == 200 {
			break
		}
		if a.code != http.StatusServiceUnavailable || a.retryAfter == "" || time.Since(fault) > 60*time.Second {
			t.Fatalf("retry %d of the ball: %d (Retry-After %q) %s", retries, a.code, a.retryAfter, a.body)
		}
		retries++
	}
	t.Logf("the ball accepted %v after the kill, after %d more 503s; %s", time.Since(fault).Round(time.Millisecond), retries, a.body)
	if !strings.Contains(a.body, fmt.Sprintf(`"seq":%d`, third+2)) {
		t.Fatalf("the retried ball got %s, want seq %d (nothing published by the refused attempts)", a.body, third+2)
	}
	for i, b := range balls[third+1:] {
		if a := post("POST", path+"/deliveries", b); a.code != 200 {
			t.Fatalf("ball %d after the failover: %d %s", third+1+i, a.code, a.body)
		}
	}
	if a := post("PUT", path, end); a.code != 200 {
		t.Fatalf("result: %d %s", a.code, a.body)
	}
	w.verifyFinal(t, len(balls)+2, 15*time.Second, f)
	servertest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(p.out.String(), "redis master changed (failover)") {
			return fmt.Errorf("the publish API did not log the new master")
		}
		return nil
	})
}
