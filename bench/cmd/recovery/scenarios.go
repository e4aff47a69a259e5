package main

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"crease/bench/internal/procs"
)

// waitAll polls cond every 50 ms until it holds or within passes.
func waitAll(what string, within time.Duration, cond func() bool) error {
	end := time.Now().Add(within)
	for !cond() {
		if time.Now().After(end) {
			return fmt.Errorf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval: cond decides
	}
	return nil
}

func live(cs []*mclient) func() bool {
	return func() bool {
		for _, c := range cs {
			if c.seq.Load() == 0 {
				return false
			}
		}
		return true
	}
}

// verify stops nothing: it waits until every client's state equals the final snapshot
// of its match (the publisher stopped) and reports how many do, and the first error.
func verify(g *gateway, byMatch map[string][]*mclient, within time.Duration) (int, error) {
	ok := 0
	var first error
	for match, cs := range byMatch {
		final, err := snapshot(g, match)
		if err != nil {
			return 0, err
		}
		for _, c := range cs {
			var last error
			_ = waitAll("verify", within, func() bool { last = c.chk.Verify(final); return last == nil })
			if last == nil {
				ok++
			} else if first == nil {
				first = last
			}
		}
	}
	return ok, first
}

func gatewayArgs(mode string) []string {
	if mode == "resync" {
		return []string{"--no-replay"}
	}
	return nil
}

type airplaneResult struct {
	mode                string
	clients, verified   int
	bytes, requests     []float64 // per client, from the network's return to convergence
	converge            []float64 // seconds
	cpu                 float64   // gateway CPU-s over the recovery
	snapshots           int64     // fetched during the recovery
	recovered, composed float64
	err                 error
}

// airplane: n clients on 2G links lose them for outage, then get them back.
func (e *env) airplane(mode string, n int, outage time.Duration) (airplaneResult, error) {
	r := airplaneResult{mode: mode, clients: n}
	const match = "335982"
	l, err := e.startLive("air-"+mode, 2, match, gatewayArgs(mode)...)
	defer l.stop()
	if err != nil {
		return r, err
	}
	ing, g := l.ing, l.g
	wsP, err := newProxy("ws", g.ws)
	if err != nil {
		return r, err
	}
	defer wsP.stop()
	httpP, err := newProxy("http", g.http)
	if err != nil {
		return r, err
	}
	defer httpP.stop()
	for _, p := range []*proxy{wsP, httpP} {
		if err := p.twoG(); err != nil {
			return r, err
		}
	}
	var cs []*mclient
	for range n {
		c, err := startClient(clientOpts{ws: "ws://" + wsP.addr() + "/ws", http: "http://" + httpP.addr(), match: match, catchUp: mode == "catchup"})
		if err != nil {
			return r, err
		}
		defer c.stop()
		cs = append(cs, c)
	}
	if err := waitAll("every client live", 60*time.Second, live(cs)); err != nil {
		return r, err
	}
	time.Sleep(5 * time.Second) // a few live deltas first: the length of the scenario
	for _, p := range []*proxy{wsP, httpP} {
		if err := p.both("air", "reset_peer", map[string]any{"timeout": 0}); err != nil {
			return r, err
		}
	}
	time.Sleep(outage) // airplane mode: the length of the outage
	back, err := snapshot(g, match)
	if err != nil {
		return r, err
	}
	b0, q0, s0 := make([]int64, n), make([]int64, n), int64(0)
	for i, c := range cs {
		b0[i], q0[i] = c.bytes(), c.requests()
		s0 += c.snaps.Load()
	}
	rec0 := metric(g, "crease_recoveries_total", `result="recovered"`)
	cu0 := metric(g, "crease_catchups_total", `source="replay"`, `result="composed"`)
	cpu0 := g.cpu()
	wsP.removeBoth("air")
	httpP.removeBoth("air")
	t0 := time.Now()
	done := make([]bool, n)
	err = waitAll("every client back at the state of the network's return", 3*time.Minute, func() bool {
		all := true
		for i, c := range cs {
			if done[i] {
				continue
			}
			if c.seq.Load() >= back.Seq {
				done[i] = true
				r.converge = append(r.converge, time.Since(t0).Seconds())
				r.bytes = append(r.bytes, float64(c.bytes()-b0[i]))
				r.requests = append(r.requests, float64(c.requests()-q0[i]))
			} else {
				all = false
			}
		}
		return all
	})
	r.cpu = g.cpu() - cpu0
	for _, c := range cs {
		r.snapshots += c.snaps.Load()
	}
	r.snapshots -= s0
	r.recovered = metric(g, "crease_recoveries_total", `result="recovered"`) - rec0
	r.composed = metric(g, "crease_catchups_total", `source="replay"`, `result="composed"`) - cu0
	if err != nil {
		return r, err
	}
	ing.Stop(5 * time.Second)
	r.verified, r.err = verify(g, map[string][]*mclient{match: cs}, time.Minute)
	return r, nil
}

type slowResult struct {
	mode                      string
	fast, slow, verified      int
	p50, p99, p999            float64 // ms, fast clients
	slowSnapshots             int64
	slowBytes                 float64 // median per slow client, until it holds the final state
	slowConverge              float64 // s from the stream's end until every slow client holds the final state
	cpu                       float64
	resyncs, composed, deltas float64
	err                       error
}

// slowmix: 90 clients read as fast as they can (raw readers that only time the deltas),
// 10 Go clients (with the Checker) at 3 KB/s, for 30 s of a 20 deltas/s stream (with its
// commentary).
func (e *env) slowmix(mode string) (slowResult, error) {
	r := slowResult{mode: mode, fast: 90, slow: 10}
	const match = "335982"
	l, err := e.startLive("slow-"+mode, 20, match)
	defer l.stop()
	if err != nil {
		return r, err
	}
	ing, g := l.ing, l.g
	lat := newLatency()
	var slow []*mclient
	var fast []*rawReader
	for range r.fast {
		c, err := startRawReader(g.wsURL(""), match, lat)
		if err != nil {
			return r, err
		}
		defer c.stop()
		fast = append(fast, c)
	}
	for range r.slow {
		c, err := startClient(clientOpts{ws: g.wsURL(""), http: g.httpURL(), match: match, rate: 3000, catchUp: mode == "catchup"})
		if err != nil {
			return r, err
		}
		defer c.stop()
		slow = append(slow, c)
	}
	if err := waitAll("every client live", 60*time.Second, func() bool {
		for _, f := range fast {
			if f.deltas.Load() == 0 {
				return false
			}
		}
		return live(slow)()
	}); err != nil {
		return r, err
	}
	time.Sleep(3 * time.Second) // settle
	lat.mu.Lock()
	lat.h.Reset()
	lat.mu.Unlock()
	b0 := make([]int64, len(slow))
	var s0 int64
	for i, c := range slow {
		b0[i] = c.bytes()
		s0 += c.snaps.Load()
	}
	res0, cu0, d0 := metric(g, "crease_resyncs_total", `reason="slow"`), metric(g, "crease_catchups_total", `source="queue"`, `result="composed"`), metric(g, "crease_bus_messages_total", `kind="delta"`)
	cpu0 := g.cpu()
	time.Sleep(30 * time.Second) // the measured window
	r.cpu = g.cpu() - cpu0
	r.deltas = metric(g, "crease_bus_messages_total", `kind="delta"`) - d0
	lat.mu.Lock()
	r.p50, r.p99, r.p999 = float64(lat.h.ValueAtQuantile(50))/1e3, float64(lat.h.ValueAtQuantile(99))/1e3, float64(lat.h.ValueAtQuantile(99.9))/1e3
	lat.mu.Unlock()
	// The slow clients' cost runs until they hold the final state: a resync reaches
	// them only after the backlog ahead of it, and their snapshot then crawls too.
	ing.Stop(5 * time.Second)
	t0 := time.Now()
	r.verified, r.err = verify(g, map[string][]*mclient{match: slow}, 3*time.Minute)
	r.slowConverge = time.Since(t0).Seconds()
	r.resyncs = metric(g, "crease_resyncs_total", `reason="slow"`) - res0
	r.composed = metric(g, "crease_catchups_total", `source="queue"`, `result="composed"`) - cu0
	var bs []float64
	for i, c := range slow {
		bs = append(bs, float64(c.bytes()-b0[i]))
		r.slowSnapshots += c.snaps.Load()
	}
	r.slowSnapshots -= s0
	r.slowBytes = median(bs)
	return r, nil
}

type stormResult struct {
	mode                       string
	clients, verified          int
	snapshots                  int64
	snapshotBytes              int64
	reads, recovered, catchUps float64
	back, cpu                  float64
	err                        error
}

// storm: n clients of two matches on gateway A; B starts on the same ports and A drains
// (reconnect{after_ms} over 5 s): everyone reconnects to B.
func (e *env) storm(mode string, n int) (stormResult, error) {
	r := stormResult{mode: mode, clients: n}
	matches := []string{"335982", "1298150"}
	prefix := e.prefix("storm-" + mode)
	ing, err := e.startIngest(prefix, 2, matches...)
	if err != nil {
		return r, err
	}
	defer ing.Stop(5 * time.Second)
	wsPort, httpPort := procs.FreePort(), procs.FreePort()
	ws, http := fmt.Sprintf("127.0.0.1:%d", wsPort), fmt.Sprintf("127.0.0.1:%d", httpPort)
	a, err := e.startGateway("a", prefix, ws, http, "--reuse-port", "--drain-window", "5s")
	if err != nil {
		return r, err
	}
	defer a.p.Stop(10 * time.Second)
	for _, m := range matches {
		if _, err := waitSnapshot(a, m, 1, 20*time.Second); err != nil {
			return r, err
		}
	}
	byMatch := map[string][]*mclient{}
	var all []*mclient
	for i := range n {
		m := matches[i%2]
		c, err := startClient(clientOpts{ws: a.wsURL(""), http: a.httpURL(), match: m, catchUp: mode == "catchup"})
		if err != nil {
			return r, err
		}
		defer c.stop()
		byMatch[m] = append(byMatch[m], c)
		all = append(all, c)
	}
	if err := waitAll("every client live", 2*time.Minute, live(all)); err != nil {
		return r, err
	}
	time.Sleep(3 * time.Second) // settle
	b, err := e.startGateway("b", prefix, ws, http, append([]string{"--reuse-port"}, gatewayArgs(mode)...)...)
	if err != nil {
		return r, err
	}
	defer b.p.Stop(10 * time.Second)
	if err := waitAll("the successor listening", 15*time.Second, func() bool {
		return procs.Listeners(fmt.Sprint(wsPort)) >= 2 && procs.Listeners(fmt.Sprint(httpPort)) >= 2
	}); err != nil {
		return r, err
	}
	var s0, h0 int64
	for _, c := range all {
		s0 += c.snaps.Load()
		h0 += c.net.http.Load()
	}
	cpu0 := b.cpu()
	at := map[string]uint64{}
	for _, m := range matches {
		s, err := snapshot(a, m)
		if err != nil {
			return r, err
		}
		at[m] = s.Seq
	}
	_ = a.p.Cmd.Process.Signal(syscall.SIGTERM)
	t0 := time.Now()
	err = waitAll("every client on the successor, current", 2*time.Minute, func() bool {
		for m, cs := range byMatch {
			for _, c := range cs {
				if c.net.dials.Load() < 2 || c.seq.Load() < at[m] {
					return false
				}
			}
		}
		return true
	})
	r.back = time.Since(t0).Seconds()
	if err != nil {
		return r, err
	}
	select {
	case <-a.p.Done:
	case <-time.After(15 * time.Second):
		return r, errors.New("gateway a did not exit after its drain")
	}
	r.cpu = b.cpu() - cpu0
	for _, c := range all {
		r.snapshots += c.snaps.Load()
		r.snapshotBytes += c.net.http.Load()
	}
	r.snapshots -= s0
	r.snapshotBytes -= h0
	r.reads = metric(b, "crease_history_reads_total", `result="ok"`)
	r.recovered = metric(b, "crease_recoveries_total", `result="recovered"`)
	r.catchUps = metric(b, "crease_catchups_total", `source="replay"`, `result="composed"`)
	ing.Stop(5 * time.Second)
	r.verified, r.err = verify(b, byMatch, time.Minute)
	return r, nil
}
