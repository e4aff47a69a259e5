package main

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	busredis "crease/bus/redis"
	"crease/internal/redistest"
	"crease/server"
	"crease/server/servertest"
)

// BenchmarkIngestAPI: balls per second through `crease ingest --listen` (the publish
// API, a real process) into a real Redis, and the latency from a POST to its delta on a
// client of a real gateway. Each publisher posts a real match's balls one after another
// (a score feed is sequential per match), each to its own match; every ball is timed
// from just before its POST to its delta read on a WebSocket subscribed to the match.
//
//	go test -run '^$' -bench BenchmarkIngestAPI -benchtime 1500x ./cmd/crease/
func BenchmarkIngestAPI(b *testing.B) {
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("publishers=%d", par), func(b *testing.B) { benchAPI(b, par) })
	}
}

func benchAPI(b *testing.B, par int) {
	srv := redistest.Start(b)
	listen := servertest.FreeAddr(b)
	p := startIngest(b, "--redis", srv.Addr(), "--listen", listen, "--api-key", "K", "--log-level", "warn")
	base := "http://" + listen
	servertest.Eventually(b, 15*time.Second, func() error {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	_ = p
	reg := prometheus.NewRegistry()
	gb, err := busredis.New(busredis.Options{Addrs: []string{srv.Addr()}, Logger: quietLog(), Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = gb.Close() })
	gw := servertest.Run(b, server.Options{Bus: gb, Registerer: reg, Gatherer: reg, Loops: 1})

	start, _, balls := apiFeed(b, "1298150")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: par}}
	post := func(method, path string, body []byte) {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer K")
		resp, err := hc.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			b.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
	}
	type lane struct {
		ids   []string
		conns []*servertest.WSConn
		n     int
	}
	lanes := make([]*lane, par)
	for w := range lanes {
		l := &lane{n: b.N / par}
		if w < b.N%par {
			l.n++
		}
		for m := 0; m*len(balls) < l.n; m++ {
			id := fmt.Sprintf("b%d-%d", w, m)
			post("PUT", "/v1/matches/"+id, start)
			c, _, err := servertest.DialWS(gw.WSAddr().String(), "/ws?match="+id, nil, "")
			if err != nil || c == nil {
				b.Fatalf("dial: %v", err)
			}
			b.Cleanup(func() { c.Close() })
			c.Expect(b, "hello")
			c.Expect(b, "subscribed")
			l.ids, l.conns = append(l.ids, id), append(l.conns, c)
		}
		lanes[w] = l
	}
	// The gateway's Redis subscriptions are in place once the bus says so.
	subs := 0
	for _, l := range lanes {
		subs += len(l.ids)
	}
	servertest.Eventually(b, 10*time.Second, func() error {
		if n := servertest.Metric(b, servertest.HTTPURL(gw), "crease_bus_subscriptions"); int(n) < subs {
			return fmt.Errorf("%v subscriptions", n)
		}
		return nil
	})
	lat := make([][]time.Duration, par)
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for w, l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range l.n {
				m, k := i/len(balls), i%len(balls)
				sent := time.Now()
				post("POST", "/v1/matches/"+l.ids[m]+"/deliveries", balls[k])
				want := uint64(k + 2) // the PUT was seq 1
				for {
					f, err := l.conns[m].Next(time.Now().Add(10 * time.Second))
					if err != nil {
						b.Errorf("lane %d ball %d: %v", w, i, err)
						return
					}
					if f.Type == "delta" && f.Seq == want {
						break
					}
				}
				lat[w] = append(lat[w], time.Since(sent))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "balls/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

func apiFeed(b testing.TB, name string) (start, end []byte, balls [][]byte) {
	f := servertest.LiveFeed(b, name)
	for _, body := range f.Balls {
		balls = append(balls, body)
	}
	return f.Start, f.End, balls
}
