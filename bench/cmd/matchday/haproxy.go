package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"crease/bench/internal/procs"
)

// The haproxy variant puts the gateways behind HAProxy as deploy/haproxy.cfg does:
// sticky SRV cookie (inserted on the 101 answer), leastconn for clients without one,
// /readyz health checks on the HTTP port tracked by the WebSocket server, 503 retried
// elsewhere, WebSocket tunnel timeouts. The differences are for this machine: one server
// line per gateway of the run instead of two, no request log (a line per connection
// would cost more than the proxying), one thread per process, and several processes
// sharing the public port (HAProxy binds it with SO_REUSEPORT): every proxied WebSocket
// takes two descriptors and a process here has 20,000.

func (c *cluster) haproxyConfig(maxconn int) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f+"\n", a...) }
	w("global")
	w("    maxconn %d", maxconn)
	w("    nbthread 1")
	w("defaults")
	w("    mode http")
	w("    option http-keep-alive")
	w("    option redispatch 1")
	w("    retries 3")
	w("    retry-on conn-failure empty-response 503")
	w("    timeout connect 5s")
	w("    timeout http-request 10s")
	w("    timeout http-keep-alive 15s")
	w("    timeout queue 5s")
	w("    timeout client 30s")
	w("    timeout server 30s")
	w("    timeout tunnel 1h")
	w("    timeout client-fin 30s")
	w("    timeout server-fin 30s")
	w("frontend fe_public")
	w("    bind %s", c.front)
	w("    acl is_ws path /ws")
	w("    acl is_ws path_beg /ws?")
	w("    acl is_upgrade hdr(Upgrade) -i websocket")
	w("    use_backend be_ws if is_ws || is_upgrade")
	w("    default_backend be_http")
	w("backend be_http")
	w("    balance leastconn")
	w("    cookie SRV insert indirect nocache httponly")
	w("    option httpchk")
	w("    http-check send meth GET uri %s ver HTTP/1.1 hdr Host crease", c.gws[0].readyPath)
	w("    http-check expect status 200")
	w("    default-server inter 2s fastinter 1s downinter 2s fall 2 rise 2")
	for _, g := range c.gws {
		w("    server %s %s cookie %s check", g.name, g.http, g.name)
	}
	w("backend be_ws")
	w("    balance leastconn")
	w("    cookie SRV insert indirect nocache httponly")
	for _, g := range c.gws {
		w("    server %s %s cookie %s track be_http/%s", g.name, g.ws, g.name, g.name)
	}
	return b.String()
}

// startHAProxy starts enough HAProxy processes for the audience on one public port and
// waits until all listen and the front answers.
func (c *cluster) startHAProxy() error {
	n := (c.o.audience + c.o.perLB - 1) / c.o.perLB
	c.front = freeAddr("127.0.0.1")
	cfg := filepath.Join(c.e.logDir, c.variant+"-haproxy.cfg")
	// Room above the audience's share for the health checks and the snapshot requests.
	if err := os.WriteFile(cfg, []byte(c.haproxyConfig(c.o.perLB+500)), 0o644); err != nil {
		return err
	}
	for i := range n {
		p, err := c.e.start("haproxy", []string{"-db", "-f", cfg}, fmt.Sprintf("%s-haproxy-%d.log", c.variant, i))
		if err != nil {
			return err
		}
		c.lbs = append(c.lbs, p)
	}
	end := time.Now().Add(20 * time.Second)
	for procs.Listeners(portOf(c.front)) < n {
		for i, p := range c.lbs {
			if !p.Alive() {
				return fmt.Errorf("haproxy %d exited: %s", i, c.logTail(fmt.Sprintf("%s-haproxy-%d.log", c.variant, i)))
			}
		}
		if time.Now().After(end) {
			return fmt.Errorf("%d haproxy processes not all listening on %s after 20 s", n, c.front)
		}
		time.Sleep(50 * time.Millisecond)
	}
	client := http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + c.front + c.gws[0].readyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(end) {
			return fmt.Errorf("haproxy front %s does not reach a ready gateway: %v", c.front, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
