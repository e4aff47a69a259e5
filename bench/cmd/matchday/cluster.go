package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"crease/bench/internal/procs"
)

// gateway is one gateway slot: its addresses and arguments, and the processes that
// held it (the first, then its successor after the handover).
type gateway struct {
	name       string // gw1...: the hello node and HAProxy's cookie value
	ws, http   string // listen addresses; http is ws for the baselines (one server)
	args       []string
	procs      []*gwProc
	metrics    bool // serves crease's /metrics on http
	readyPath  string
	successors int
}

// gwProc is one process of a slot.
type gwProc struct {
	*procs.Proc
	label   string  // gw1, then gw1' for the successor
	start   float64 // Unix s, to tell which process answered a scrape of a shared port
	baseFDs int     // descriptors with no connection
	win     []scrape
	first   *scrape // the first scrape of this process, for whole-run histograms
	last    *scrape
	exitedT float64 // s since the run's start, 0 while alive
}

func (g *gateway) current() *gwProc { return g.procs[len(g.procs)-1] }

// cluster is one variant's processes.
type cluster struct {
	e        *env
	o        options
	variant  string
	redis    *procs.Proc
	redisAdr string
	gws      []*gateway
	lbs      []*procs.Proc
	front    string // HAProxy's public address (haproxy variant)
	ingest   *procs.Proc
	relay    *procs.Proc // centrifuge: forwards the crease channel into its broker
	wsURL    string      // what the load processes dial
	snapURLs []string    // where they fetch snapshots
	matchID  string
}

func freeAddr(ip string) string {
	for range 50 {
		l, err := net.Listen("tcp4", ip+":0")
		if err != nil {
			continue
		}
		a := l.Addr().String()
		l.Close()
		return a
	}
	return ip + ":0"
}

// up starts Redis and the gateways (and HAProxy), and waits until each is ready.
func (c *cluster) up() error {
	c.matchID = strings.TrimSuffix(filepath.Base(c.o.matchFile), ".json")
	c.redisAdr = freeAddr("127.0.0.1")
	_, port, _ := net.SplitHostPort(c.redisAdr)
	var err error
	c.redis, err = c.e.start("redis-server", []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--maxclients", "10000"}, c.variant+"-redis.log")
	if err != nil {
		return err
	}
	if err := procs.WaitListen(c.redisAdr, c.redis, 10*time.Second); err != nil {
		return fmt.Errorf("redis: %v", err)
	}
	// Addresses: one WebSocket port shared by every gateway (reuseport), or an address
	// of its own for each gateway, as separate hosts behind HAProxy would have.
	wsPort := portOf(freeAddr("127.0.0.1"))
	httpPort := portOf(freeAddr("127.0.0.1"))
	for i := range c.o.gateways {
		g := &gateway{name: fmt.Sprintf("gw%d", i+1)}
		ip := "127.0.0.1"
		if c.variant == "haproxy" {
			ip = fmt.Sprintf("127.0.1.%d", i+1)
			g.ws, g.http = ip+":"+wsPort, ip+":"+httpPort
		} else {
			g.ws, g.http = ip+":"+wsPort, freeAddr(ip)
		}
		c.gatewayArgs(g)
		c.gws = append(c.gws, g)
	}
	for _, g := range c.gws {
		if _, err := c.startGateway(g); err != nil {
			return err
		}
	}
	for _, g := range c.gws {
		if err := waitReady(g, g.current(), 20*time.Second); err != nil {
			return err
		}
	}
	// On a shared port any process may have answered: wait until all listen.
	end := time.Now().Add(20 * time.Second)
	for listeners(c.gws[0]) < len(c.gws) {
		if time.Now().After(end) {
			return fmt.Errorf("%d of %d gateways listen on %s after 20 s", listeners(c.gws[0]), len(c.gws), c.gws[0].ws)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, g := range c.gws {
		g.current().baseFDs = procs.FDs(g.current().Pid())
	}
	c.wsURL = "ws://" + c.gws[0].ws + "/ws"
	for _, g := range c.gws {
		c.snapURLs = append(c.snapURLs, "http://"+g.http)
	}
	if c.variant == "haproxy" {
		if err := c.startHAProxy(); err != nil {
			return err
		}
		c.wsURL = "ws://" + c.front + "/ws"
		c.snapURLs = []string{"http://" + c.front}
	}
	return nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// gatewayArgs sets g's command line for the server under test.
func (c *cluster) gatewayArgs(g *gateway) {
	switch c.o.server {
	case "crease":
		g.args = []string{"serve", "--ws-addr", g.ws, "--http-addr", g.http, "--redis", c.redisAdr,
			"--loops", itoa(c.o.loops), "--node", g.name, "--reuse-port", "--drain-window", c.o.drain.String(),
			"--log-level", "warn"}
		g.metrics, g.readyPath = true, "/readyz"
	default:
		// The baselines serve WebSocket, /v1/matches/{id} and /readyz on one port.
		g.http = g.ws
		g.args = []string{"--addr", g.ws, "--redis", c.redisAdr, "--reuse-port", "--node", g.name}
		g.readyPath = "/readyz"
	}
}

func (c *cluster) bin() string {
	if c.o.server == "crease" {
		return c.e.bins["crease"]
	}
	return c.e.bins[c.o.server]
}

// startGateway starts a process for slot g (the first, or a successor on the same
// ports).
func (c *cluster) startGateway(g *gateway) (*gwProc, error) {
	label := g.name
	for range len(g.procs) {
		label += "'"
	}
	p, err := c.e.start(c.bin(), g.args, fmt.Sprintf("%s-%s-%d.log", c.variant, g.name, len(g.procs)))
	if err != nil {
		return nil, err
	}
	gp := &gwProc{Proc: p, label: label, start: procs.StartTime(p.Pid())}
	g.procs = append(g.procs, gp)
	return gp, nil
}

// waitReady waits until gp answers its ready path with 200. On a shared port another
// process may answer; that is enough for the first start (every process is waited for
// in turn) and for a successor the listener count is checked instead.
func waitReady(g *gateway, gp *gwProc, within time.Duration) error {
	end := time.Now().Add(within)
	client := http.Client{Timeout: time.Second}
	for {
		if !gp.Alive() {
			return fmt.Errorf("%s exited before it was ready (%v)", gp.label, gp.Cmd.ProcessState)
		}
		resp, err := client.Get("http://" + g.http + g.readyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s not ready on %s within %v (%v)", gp.label, g.http, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startIngest replays the match onto Redis at the run's pace, as `crease ingest` does
// in production.
func (c *cluster) startIngest() error {
	var err error
	if c.o.server == "centrifuge" {
		if err := c.startRelay(); err != nil {
			return err
		}
	}
	c.ingest, err = c.e.start(c.e.bins["crease"], []string{"ingest", "--redis", c.redisAdr, "--match", c.o.matchFile,
		"--speed", fmt.Sprint(c.o.speed), "--log-level", "warn"}, c.variant+"-ingest.log")
	return err
}

// stopIngest ends the replay and waits for the publisher to exit.
func (c *cluster) stopIngest() error {
	_ = c.ingest.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.ingest.Done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("crease ingest did not exit within 10 s of SIGTERM")
	}
}

// down stops everything in order: HAProxy, the gateways (their drain is short with no
// connection left), Redis.
func (c *cluster) down() {
	for _, p := range c.lbs {
		p.Stop(5 * time.Second)
	}
	for _, g := range c.gws {
		for _, gp := range g.procs {
			gp.Stop(c.o.drain + 10*time.Second)
		}
	}
	if c.ingest != nil {
		c.ingest.Stop(5 * time.Second)
	}
	if c.relay != nil {
		c.relay.Stop(5 * time.Second)
	}
	c.redis.Stop(5 * time.Second)
}

// listeners counts the sockets listening on slot g's WebSocket port.
func listeners(g *gateway) int { return procs.Listeners(portOf(g.ws)) }

// logTail is the end of a log of this run, for a failure message.
func (c *cluster) logTail(name string) string {
	b, err := os.ReadFile(filepath.Join(c.e.logDir, name))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	return s
}

// startRelay starts the relay of the crease channel into centrifuge's broker and waits
// until it is subscribed, so that it misses no ball.
func (c *cluster) startRelay() error {
	var err error
	c.relay, err = c.e.start(c.e.bins["publisher"], []string{"--redis", c.redisAdr, "--matches", c.matchID,
		"--target", "centrifuge", "--relay"}, c.variant+"-relay.log")
	if err != nil {
		return err
	}
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{c.redisAdr}, DisableCache: true})
	if err != nil {
		return err
	}
	defer rc.Close()
	channel := "crease:{" + c.matchID + "}"
	end := time.Now().Add(20 * time.Second)
	for {
		n, err := rc.Do(context.Background(), rc.B().PubsubNumsub().Channel(channel).Build()).AsIntMap()
		if err == nil && n[channel] > 0 {
			return nil
		}
		if !c.relay.Alive() {
			return fmt.Errorf("the relay exited: %s", c.logTail(c.variant+"-relay.log"))
		}
		if time.Now().After(end) {
			return fmt.Errorf("the relay is not subscribed to %s after 20 s (%v)", channel, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
