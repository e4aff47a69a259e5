package ops_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
)

// TestMetricsAfterTraffic drives every kind of traffic a gateway sees (upgrades,
// subscriptions, deltas of both priorities, events, refused handshakes, a normal close
// and a vanished peer) and checks each metric of PROTOCOL.md and deploy/README.md is
// exported with the value that traffic implies.
func TestMetricsAfterTraffic(t *testing.T) {
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	addr := s.WSAddr().String()

	// Before any traffic the families a dashboard rates over already exist at 0.
	m0 := servertest.Scrape(t, servertest.HTTPURL(s))
	for _, name := range []string{"crease_handshakes_total", "crease_disconnects_total", "crease_dropped_total",
		"crease_resyncs_total", "crease_accept_errors_total", "crease_bus_messages_total", "crease_bus_lost_total", "crease_bus_dropped_total",
		"crease_fanout_latency_seconds_count", "crease_draining"} {
		if !m0.Has(name) {
			t.Errorf("%s not exported before traffic", name)
		}
	}

	const clients, deltas, events = 8, 10, 5
	conns := dialSubscribed(t, addr, "m1", clients)
	// Two refused handshakes: another WebSocket version (426) and no key (400).
	for _, hdr := range []string{"Sec-WebSocket-Version: 8\r\n", ""} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		if hdr != "" {
			req += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + hdr
		} else {
			req += "Sec-WebSocket-Version: 13\r\n"
		}
		fmt.Fprint(nc, req+"\r\n")
		buf := make([]byte, 512)
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := nc.Read(buf)
		nc.Close()
		if n < 12 || string(buf[9:12]) == "101" {
			t.Fatalf("refused handshake answered %q", buf[:n])
		}
	}

	p := newPublisher(b)
	for i := range deltas {
		prio := "normal"
		if i%2 == 0 {
			prio = "high"
		}
		if err := p.delta("m1", prio); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := p.event("m1", fmt.Sprint("ball ", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every client gets the ten deltas in order; events may come between them (and could
	// be shed under lag, which the counters below must then account for).
	for i, c := range conns {
		var seq uint64
		for seq < deltas {
			f, err := c.Next(time.Now().Add(10 * time.Second))
			if err != nil {
				t.Fatalf("client %d after seq %d: %v", i, seq, err)
			}
			if f.Type == "delta" {
				if f.Seq != seq+1 {
					t.Fatalf("client %d: seq %d after %d", i, f.Seq, seq)
				}
				seq = f.Seq
			} else if f.Type != "event" {
				t.Fatalf("client %d: unexpected %s", i, f.Raw)
			}
		}
	}
	// One client closes normally (close frame, echoed), one vanishes.
	normal := []byte{0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2}
	if _, err := conns[0].Write(normal); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := conns[0].Next(time.Now().Add(5 * time.Second))
		if err != nil {
			t.Fatalf("waiting for the close echo: %v", err)
		}
		if f.Close != 0 {
			if f.Close != 1000 {
				t.Fatalf("close echo %d", f.Close)
			}
			break
		}
	}
	conns[1].Close()

	// A client may read a frame before its loop has recorded the fan-out that wrote it
	// (the loop observes once the whole batch is written): wait for the figures too.
	var m servertest.Samples
	servertest.Eventually(t, 5*time.Second, func() error {
		m = servertest.Scrape(t, servertest.HTTPURL(s))
		// Ticks (every 50 ms) carry the loop-lag probe: wait for a few.
		// Disconnects: the normal close, the vanished client and the two refused handshakes.
		if c, d := m.Sum("crease_connections"), m.Sum("crease_disconnects_total"); c != clients-2 || d != 4 ||
			m[`crease_disconnects_total{reason="handshake_refused"}`] != 2 || m[`crease_disconnects_total{reason="normal"}`] != 1 {
			return fmt.Errorf("connections %v, disconnects %v (%v refused, %v normal); want %d, 4 (2, 1)", c, d,
				m[`crease_disconnects_total{reason="handshake_refused"}`], m[`crease_disconnects_total{reason="normal"}`], clients-2)
		}
		for l := range 2 {
			lbl := fmt.Sprintf(`loop="%d"`, l)
			if n := m.Sum("crease_loop_lag_seconds_count", lbl); n < 3 {
				return fmt.Errorf("loop %d: %v loop-lag samples, want 3", l, n)
			}
			if n := m.Sum("crease_dispatch_delay_seconds_count", lbl); m.Has(`crease_connections{`+lbl+`}`) && n < 1 {
				return fmt.Errorf("loop %d: no dispatch-delay sample yet", l)
			}
		}
		if n := m.Sum("crease_fanout_latency_seconds_count"); n < 2*deltas {
			return fmt.Errorf("%v fan-out observations, want %d (both loops)", n, 2*deltas)
		}
		return nil
	})

	// The three numbers.
	loops := 0
	for l := range 2 {
		lbl := fmt.Sprintf(`loop="%d"`, l)
		if _, ok := m[`crease_connections{`+lbl+`}`]; !ok {
			continue // a loop that never had a connection has no shard yet
		}
		loops++
		if n := m.Sum("crease_loop_lag_seconds_count", lbl); n < 1 {
			t.Errorf("loop %d: no loop-lag samples %v", l, m.Family("crease_loop_lag_seconds_count"))
		}
		if inf := m.Sum("crease_loop_lag_seconds_bucket", lbl, `le="+Inf"`); inf != m.Sum("crease_loop_lag_seconds_count", lbl) {
			t.Errorf("loop %d: +Inf bucket %v != count", l, inf)
		}
		if m.Sum("crease_dispatch_delay_seconds_count", lbl) < 1 {
			t.Errorf("loop %d: no dispatch-delay samples", l)
		}
		if v, ok := m[`crease_pending_bytes{`+lbl+`}`]; !ok || v < 0 {
			t.Errorf("loop %d: pending_bytes %v %v", l, v, ok)
		}
		if _, ok := m[`crease_subscriptions{`+lbl+`}`]; !ok {
			t.Errorf("loop %d: no subscriptions gauge", l)
		}
	}
	if loops != 2 {
		t.Errorf("connections on %d loops, want both: %v", loops, m.Family("crease_connections"))
	}
	if lag := m.Sum("crease_loop_lag_seconds_sum") / m.Sum("crease_loop_lag_seconds_count"); lag > 0.5 {
		t.Errorf("mean loop lag %.3fs on an idle gateway", lag)
	}
	// Fan-out latency: one observation per frame per loop with subscribers.
	shed := m.Sum("crease_dropped_total", `prio="low"`, `reason="shed"`)
	fan := m.Sum("crease_fanout_latency_seconds_count")
	if fan < float64(deltas*loops) || fan > float64((deltas+events)*loops) {
		t.Errorf("fanout_latency count %v, want between %d and %d", fan, deltas*loops, (deltas+events)*loops)
	}
	if mean := m.Sum("crease_fanout_latency_seconds_sum") / fan; mean <= 0 || mean > 1 {
		t.Errorf("mean fan-out latency %.4fs", mean)
	}
	if got := m.Sum("crease_subscriptions"); got != clients-2 {
		t.Errorf("subscriptions %v, want %d", got, clients-2)
	}

	// Counters of the traffic above.
	want := map[string]float64{
		`crease_handshakes_total{result="ok"}`:               clients,
		`crease_handshakes_total{result="upgrade_required"}`: 1,
		`crease_handshakes_total{result="bad_request"}`:      1,
		`crease_handshakes_total{result="overloaded"}`:       0,
		`crease_disconnects_total{reason="normal"}`:          1,
		`crease_disconnects_total{reason="peer_gone"}`:       1,
		`crease_disconnects_total{reason="drain"}`:           0,
		`crease_delivered_total{prio="high"}`:                deltas / 2 * clients,
		`crease_delivered_total{prio="normal"}`:              deltas / 2 * clients,
		`crease_bus_messages_total{kind="delta"}`:            deltas,
		`crease_bus_messages_total{kind="event"}`:            events,
		`crease_bus_invalid_total`:                           0,
		`crease_bus_dropped_total{reason="duplicate"}`:       0,
		`crease_bus_latency_seconds_count`:                   deltas + events,
		`crease_resyncs_total{reason="slow"}`:                0,
		`crease_accept_errors_total{errno="EMFILE"}`:         0,
		`crease_slow_consumer_cuts_total`:                    0,
		`crease_draining`:                                    0,
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("%s missing", k)
		} else if got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if low := m[`crease_delivered_total{prio="low"}`] + shed; low != events*clients {
		t.Errorf("events delivered %v + shed %v, want %d", m[`crease_delivered_total{prio="low"}`], shed, events*clients)
	}
	// Control frames: hello and subscribed at least.
	if c := m[`crease_delivered_total{prio="control"}`]; c < 2*clients {
		t.Errorf("control frames delivered %v, want ≥ %d", c, 2*clients)
	}
	t.Logf("loop lag samples %v, fan-out observations %v (mean %.2f ms), dispatch delay samples %v",
		m.Sum("crease_loop_lag_seconds_count"), fan, 1000*m.Sum("crease_fanout_latency_seconds_sum")/fan,
		m.Sum("crease_dispatch_delay_seconds_count"))
}
