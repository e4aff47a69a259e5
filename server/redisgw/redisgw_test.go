package redisgw_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"crease/bus"
	"crease/internal/redistest"
	"crease/server/servertest"
)

// TestTwoGatewaysConverge: one Redis, two gateways, clients on both, a real match
// replayed through the Redis publisher; half the clients subscribe mid-match. Every
// client ends with exactly the final snapshot and no rule 1 or rule 2 violation.
func TestTwoGatewaysConverge(t *testing.T) {
	t.Parallel()
	_, gws, m, ws, stop := replayOnTwoGateways(t, 60)
	applied(t, ws[0], m.ID(), 30) // mid-match: the gateways' Redis subscriptions exist already
	for i := range 10 {
		ws = append(ws, watch(t, gws[i%2], m.ID()))
		applied(t, ws[0], m.ID(), 32+2*i) // each at another point of the match
	}
	for _, w := range ws[10:] {
		applied(t, w, m.ID(), 10) // the late ones follow live deltas too
	}
	if err := stop(); err != nil {
		t.Fatalf("replay: %v", err)
	}
	verifyAll(t, m.ID(), gws, ws)
}

// TestSubscriptionFollowsInterest: a gateway holds a Redis subscription to a match only
// while it has subscribers of it, and drops it after the debounce.
func TestSubscriptionFollowsInterest(t *testing.T) {
	t.Parallel()
	srv, g, pub := oneGateway(t)
	m := servertest.RealMatch(t)
	stop := servertest.Replay(t, pub, m, 30)
	defer stop()
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the match is live", func() bool {
		_, code := get(t, g.http()+"/v1/matches/"+m.ID())
		return code == http.StatusOK
	}))
	if chs := srv.PubSub(t, "CHANNELS"); len(chs) != 0 {
		t.Fatalf("no subscribers, but the gateway holds %v", chs)
	}
	w := watch(t, g, m.ID())
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the subscription", func() bool {
		return slices.Equal(srv.PubSub(t, "CHANNELS"), []string{channel(m.ID())})
	}))
	servertest.Eventually(t, 5*time.Second, servertest.Cond("deltas", func() bool { return w.check.Stats(m.ID()).Applied > 3 }))
	w.unsub()
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the unsubscribe after the debounce", func() bool {
		return len(srv.PubSub(t, "CHANNELS")) == 0
	}))
}

// TestCluster: three masters, gateways with Cluster: true subscribe with SSUBSCRIBE on
// the master owning the match's slot, by interest, and clients converge.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	gws := []*gateway{
		startGateway(t, cl.Addrs(), gwOpts{cluster: true, node: "gw1"}),
		startGateway(t, cl.Addrs(), gwOpts{cluster: true, node: "gw2"}),
	}
	pub := newBus(t, cl.Addrs(), true, "pub", nil)
	m := servertest.RealMatch(t)
	owner := cl.NodeForKey(channel(m.ID()))
	if owner == nil {
		t.Fatal("no owner of the match's slot")
	}
	for _, n := range cl.Nodes {
		if chs := n.PubSub(t, "SHARDCHANNELS"); len(chs) != 0 {
			t.Fatalf("no subscribers, but %s has %v", n.Addr(), chs)
		}
	}
	ws := watchEach(t, gws, m.ID(), 6)
	servertest.Eventually(t, 5*time.Second, servertest.Cond("SSUBSCRIBE on the owner", func() bool {
		return slices.Equal(owner.PubSub(t, "SHARDCHANNELS"), []string{channel(m.ID())})
	}))
	// Two gateways, one shard channel: both hold it (NUMSUB counts subscribers).
	servertest.Eventually(t, 5*time.Second, servertest.Cond("both gateways subscribed", func() bool {
		out, _ := owner.Cli("PUBSUB", "SHARDNUMSUB", channel(m.ID()))
		return strings.HasSuffix(out, "\n2")
	}))
	for _, n := range cl.Nodes {
		if n != owner && len(n.PubSub(t, "SHARDCHANNELS")) != 0 {
			t.Fatalf("a shard channel on %s, which does not own the slot", n.Addr())
		}
	}
	stop := servertest.Replay(t, pub, m, 60)
	applied(t, ws[0], m.ID(), 30)
	ws = append(ws, watchEach(t, gws, m.ID(), 4)...)
	for _, w := range ws[6:] {
		applied(t, w, m.ID(), 10)
	}
	if err := stop(); err != nil {
		t.Fatalf("replay: %v", err)
	}
	verifyAll(t, m.ID(), gws, ws)
	for _, w := range ws {
		w.unsub()
	}
	servertest.Eventually(t, 5*time.Second, servertest.Cond("SUNSUBSCRIBE after the debounce", func() bool {
		return len(owner.PubSub(t, "SHARDCHANNELS")) == 0
	}))
}

// TestRedisKilledMidMatch: Redis is killed with SIGKILL mid-match and restarted without
// its data. The publisher waits, re-seeds the match at its next seq, the gateways
// resubscribe and send `resync`, and every client ends with the exact final state,
// never seeing an older seq (the Checker enforces rules 1 and 2 throughout).
func TestRedisKilledMidMatch(t *testing.T) {
	t.Parallel()
	srv, gws, m, ws, stop := replayOnTwoGateways(t, 40)
	applied(t, ws[0], m.ID(), 21) // mid-match
	before := snapshot(t, gws[0], m.ID()).Seq

	srv.Kill()
	for _, g := range gws { // both gateways have seen Redis go
		waitReadyz(t, g, http.StatusServiceUnavailable, 10*time.Second)
	}
	srv.Restart()
	for _, g := range gws {
		waitReadyz(t, g, http.StatusOK, 10*time.Second)
	}
	// Well into the match again: the store re-seeded and 20 deltas published since.
	servertest.Eventually(t, 20*time.Second, servertest.Cond("20 deltas after the restart", func() bool {
		return storedSeq(t, srv, m.ID()) >= before+20
	}))
	if err := stop(); err != nil {
		t.Fatalf("replay: %v", err)
	}
	final := snapshot(t, gws[0], m.ID())
	if final.Seq <= before {
		t.Fatalf("final seq %d not past the seq %d before the kill", final.Seq, before)
	}
	if got := metric(t, gws[0], "crease_bus_resubscribes_total"); got < 1 {
		t.Fatalf("resubscribes %v", got)
	}
	verifyAll(t, m.ID(), gws, ws)
	for i, w := range ws {
		if w.check.Stats(m.ID()).Resyncs < 1 {
			t.Fatalf("client %d got no resync across the restart", i)
		}
	}
	t.Logf("seq %d at the kill, %d at the end", before, final.Seq)
}

// TestRedisUnreachableAtStart: the gateway starts without Redis, is live but not ready,
// accepts a client, and recovers by itself when Redis appears.
func TestRedisUnreachableAtStart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Kill()
	g := startGateway(t, []string{srv.Addr()}, gwOpts{})
	if _, code := get(t, g.http()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d", code)
	}
	if _, code := get(t, g.http()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d with Redis down", code)
	}
	m := servertest.RealMatch(t)
	w := watch(t, g, m.ID())
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the client subscribed", func() bool {
		return metric(t, g, "crease_subscriptions") == 1
	}))
	srv.Restart()
	waitReadyz(t, g, http.StatusOK, 10*time.Second)
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the subscription", func() bool {
		return slices.Equal(srv.PubSub(t, "CHANNELS"), []string{channel(m.ID())})
	}))
	pub := newBus(t, []string{srv.Addr()}, false, "pub", nil)
	stop := servertest.Replay(t, pub, m, 60)
	servertest.Eventually(t, 5*time.Second, servertest.Cond("deltas", func() bool { return w.check.Stats(m.ID()).Applied > 10 }))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	verifyAll(t, m.ID(), []*gateway{g}, []*watcher{w})
}

// TestGarbageNeverReachesClients: messages on a match channel that are not a valid frame
// of that match are dropped by the gateway and counted; the client sees only the valid.
func TestGarbageNeverReachesClients(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	g := startGateway(t, []string{srv.Addr()}, gwOpts{})
	w := watch(t, g, "m1")
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the subscription", func() bool { return len(srv.PubSub(t, "CHANNELS")) == 1 }))
	var frames []string
	var mu sync.Mutex
	w.c.OnEvent(func(_ string, raw []byte) {
		if strings.Contains(string(raw), `"kind":"viewers"`) {
			return // the gateway's own periodic count, not a bus message
		}
		mu.Lock()
		frames = append(frames, string(raw))
		mu.Unlock()
	})
	garbage := []string{
		"not json",
		`{"type":"delta","match":"m2","epoch":"e1","seq":1,"prio":"high","ts":1,"patch":{"x":1}}`,                   // wrong match
		`{"type":"delta","match":"m1","epoch":"e1","prio":"high","ts":1,"patch":{"x":1}}`,                           // no seq
		`{"type":"delta","match":"m1","seq":1,"prio":"high","ts":1,"patch":{"x":1}}`,                                // no epoch
		`{"type":"delta","match":"m1","epoch":"e1","seq":1,"from":0,"prio":"high","ts":1,"patch":{"x":1}}`,          // a catch-up delta is the gateway's
		`{"type":"event","match":"m1","prio":"low","ts":1,"text":"no kind"}`,                                        // no kind
		"{\"type\":\"event\",\"match\":\"m1\",\"prio\":\"low\",\"ts\":1,\"kind\":\"commentary\",\"text\":\"\xff\"}", // not UTF-8: browsers would close (1006)
		`{"type":"event","match":"m2","prio":"low","ts":1,"kind":"commentary"}`,                                     // wrong match
		`{"type":"event","match":"m1","prio":"high","ts":1,"kind":"commentary"}`,                                    // bad prio
		`{"type":"resync","match":"m1","reason":"bus"}`,                                                             // not a bus message
		`{"type":"event","match":"m1","prio":"low","ts":1,"kind":"x","text":"` + strings.Repeat("a", bus.MaxMessageBytes) + `"}`,
	}
	before := metric(t, g, "crease_bus_invalid_total")
	for _, msg := range garbage {
		if out, err := srv.Cli("PUBLISH", channel("m1"), msg); err != nil || out != "1" {
			t.Fatalf("PUBLISH: %q %v", out, err)
		}
	}
	good := `{"type":"event","match":"m1","prio":"low","ts":1,"kind":"commentary","text":"ok"}`
	if _, err := srv.Cli("PUBLISH", channel("m1"), good); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the valid event", func() bool { mu.Lock(); defer mu.Unlock(); return len(frames) > 0 }))
	servertest.Eventually(t, 5*time.Second, servertest.Cond("garbage counted", func() bool {
		return metric(t, g, "crease_bus_invalid_total")-before == float64(len(garbage))
	}))
	if _, err := srv.Cli("PUBLISH", channel("m1"), `{"type":"delta","match":"m1","epoch":"e1","seq":1,"prio":"high","ts":1,"patch":{"x":1}}`); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the valid delta", func() bool { return w.check.Stats("m1").Applied == 1 }))
	mu.Lock()
	defer mu.Unlock()
	if len(frames) != 1 || frames[0] != good {
		t.Fatalf("events received: %q", frames)
	}
	if v := w.check.Violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
}

// TestSnapshotCoalescingOverHTTP: 1,000 concurrent GET /v1/matches/{id} on one gateway
// cost a handful of Redis GETs: for a match the gateway is not subscribed to (every
// request joins the running GET), and for a subscribed one (cache).
func TestSnapshotCoalescingOverHTTP(t *testing.T) {
	t.Parallel()
	srv, g, pub := oneGateway(t)
	m := servertest.RealMatch(t)
	publishSome(t, srv, pub, m, 10)
	burst := func() (gets float64) {
		before := metric(t, g, "crease_redis_gets_total")
		before0, _ := srv.Cli("INFO", "commandstats")
		tr := &http.Transport{MaxIdleConnsPerHost: 1000}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		// Open the 1,000 connections first, so the burst measures the requests, not
		// TCP handshakes spread over time.
		var warm sync.WaitGroup
		for range 1000 {
			warm.Add(1)
			go func() {
				defer warm.Done()
				if resp, err := hc.Get(g.http() + "/healthz"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		warm.Wait()
		servertest.Burst(t, 1000, "GET", func() error {
			resp, err := hc.Get(g.http() + "/v1/matches/" + m.ID())
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return &httpErr{resp.StatusCode}
			}
			return nil
		})
		after0, _ := srv.Cli("INFO", "commandstats")
		t.Logf("redis GET calls: %d -> %d", getCalls(before0), getCalls(after0))
		return metric(t, g, "crease_redis_gets_total") - before
	}
	cold := burst()
	t.Logf("1,000 concurrent snapshot GETs, not subscribed: %v Redis GETs", cold)
	w := watch(t, g, m.ID())
	// The gateway follows the match once its subscription's resync has been answered by a
	// second snapshot.
	servertest.Eventually(t, 5*time.Second, servertest.Cond("the client's state after the subscription's resync", func() bool {
		st := w.check.Stats(m.ID())
		return st.Resyncs > 0 && st.Snapshots > 1
	}))
	warm := burst()
	t.Logf("1,000 concurrent snapshot GETs, subscribed: %v Redis GETs", warm)
	// Not subscribed, requests share a running GET and then its answer for 250 ms, so a
	// burst costs about one GET per 250 ms of its length. Subscribed, the cache answers
	// them all.
	if cold > 20 || warm > 2 {
		t.Fatalf("1,000 GETs cost %v (not subscribed) and %v (subscribed) Redis GETs", cold, warm)
	}
}

type httpErr struct{ code int }

func (e *httpErr) Error() string { return http.StatusText(e.code) }

// getCalls reads cmdstat_get's calls from INFO commandstats.
func getCalls(info string) int {
	for _, l := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_get:calls="); ok {
			n := 0
			for _, c := range rest {
				if c < '0' || c > '9' {
					break
				}
				n = n*10 + int(c-'0')
			}
			return n
		}
	}
	return 0
}

// TestViewersAcrossGateways: /v1/matches on either gateway shows the viewers of both,
// and every client gets a low-priority `viewers` event with the total.
func TestViewersAcrossGateways(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	addrs := []string{srv.Addr()}
	o := gwOpts{viewerInterval: 100 * time.Millisecond}
	o.node = "gw1"
	g1 := startGateway(t, addrs, o)
	o.node = "gw2"
	g2 := startGateway(t, addrs, o)
	pub := newBus(t, addrs, false, "pub", nil)
	m := servertest.RealMatch(t)
	publishSome(t, srv, pub, m, 10)
	var ws []*watcher
	for i := range 5 {
		g := g1
		if i >= 3 {
			g = g2
		}
		ws = append(ws, watch(t, g, m.ID()))
	}
	for _, g := range []*gateway{g1, g2} {
		servertest.Eventually(t, 5*time.Second, servertest.Cond("viewers 5 in /v1/matches", func() bool {
			body, code := get(t, g.http()+"/v1/matches")
			return code == http.StatusOK && strings.Contains(string(body), `"viewers":5`)
		}))
	}
	for i, w := range ws {
		servertest.Eventually(t, 5*time.Second, servertest.Cond("a viewers event with 5", func() bool {
			ev := w.viewerEvents()
			return len(ev) > 0 && ev[len(ev)-1] == 5
		}))
		t.Logf("client %d viewers events %v", i, w.viewerEvents())
	}
	// Two leave gw1: the total drops to 3 everywhere.
	ws[0].unsub()
	ws[1].unsub()
	servertest.Eventually(t, 5*time.Second, servertest.Cond("a viewers event with 3 on gw2", func() bool {
		ev := ws[4].viewerEvents()
		return len(ev) > 0 && ev[len(ev)-1] == 3
	}))
	body, _ := get(t, g2.http()+"/v1/matches")
	if !strings.Contains(string(body), `"viewers":3`) {
		t.Fatalf("/v1/matches: %s", body)
	}
}
