package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"crease/bench/internal/procs"
	"crease/client"
)

// env is the processes of a run: one redis-server, and per measurement a gateway (or
// two) and a publisher, each under a key prefix of its own.
type env struct {
	bin, logs string
	redis     *procs.Proc
	redisAddr string
	runs      int
	matchFile map[string]string // match id -> Cricsheet file
}

func newEnv(root, bin, logs string) (*env, error) {
	e := &env{bin: bin, logs: logs, matchFile: map[string]string{}}
	for _, id := range []string{"335982", "1298150"} {
		e.matchFile[id] = filepath.Join(root, "ingest", "matches", id+".json")
	}
	port := strconv.Itoa(procs.FreePort())
	e.redisAddr = "127.0.0.1:" + port
	p, err := procs.Start("redis-server", []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"},
		filepath.Join(logs, "redis.log"))
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	e.redis = p
	return e, procs.WaitListen(e.redisAddr, p, 10*time.Second)
}

func (e *env) close() { e.redis.Stop(2 * time.Second) }

// gateway is one crease serve process.
type gateway struct {
	p        *procs.Proc
	ws, http string
}

func (g *gateway) wsURL(query string) string {
	u := "ws://" + g.ws + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}
func (g *gateway) httpURL() string { return "http://" + g.http }

// startGateway runs crease serve on Redis under prefix; ws and http "" take free ports.
func (e *env) startGateway(name, prefix, ws, http string, extra ...string) (*gateway, error) {
	if ws == "" {
		ws = "127.0.0.1:" + strconv.Itoa(procs.FreePort())
	}
	if http == "" {
		http = "127.0.0.1:" + strconv.Itoa(procs.FreePort())
	}
	args := append([]string{"serve", "--redis", e.redisAddr, "--redis-prefix", prefix, "--ws-addr", ws, "--http-addr", http,
		"--loops", "2", "--handshake-rate", "20000", "--handshake-burst", "20000", "--log-level", "warn", "--node", name}, extra...)
	p, err := procs.Start(e.bin, args, filepath.Join(e.logs, prefix+"-"+name+".log"))
	if err != nil {
		return nil, err
	}
	g := &gateway{p: p, ws: ws, http: http}
	if err := procs.WaitListen(http, p, 15*time.Second); err != nil {
		p.Stop(time.Second)
		return nil, fmt.Errorf("gateway %s: %w", name, err)
	}
	return g, nil
}

// startIngest replays matches onto Redis under prefix at speed deliveries a second,
// looping.
func (e *env) startIngest(prefix string, speed float64, matches ...string) (*procs.Proc, error) {
	args := []string{"ingest", "--redis", e.redisAddr, "--redis-prefix", prefix, "--speed", strconv.FormatFloat(speed, 'f', -1, 64),
		"--loop", "--log-level", "warn"}
	for _, m := range matches {
		args = append(args, "--match", e.matchFile[m])
	}
	return procs.Start(e.bin, args, filepath.Join(e.logs, prefix+"-ingest.log"))
}

// liveMatch is a match replayed onto Redis and one gateway serving it (startLive).
type liveMatch struct {
	ing *procs.Proc
	g   *gateway
}

// startLive replays match at speed deliveries a second onto Redis under a fresh prefix
// named after name, starts one gateway on it (with the extra arguments) and waits for
// the match's first snapshot. The caller stops it, whatever err is.
func (e *env) startLive(name string, speed float64, match string, extra ...string) (*liveMatch, error) {
	l := &liveMatch{}
	prefix := e.prefix(name)
	var err error
	if l.ing, err = e.startIngest(prefix, speed, match); err != nil {
		return l, err
	}
	if l.g, err = e.startGateway("gw", prefix, "", "", extra...); err != nil {
		return l, err
	}
	_, err = waitSnapshot(l.g, match, 1, 20*time.Second)
	return l, err
}

// stop stops the gateway, then the replay (those of them that started).
func (l *liveMatch) stop() {
	if l.g != nil {
		l.g.p.Stop(5 * time.Second)
	}
	if l.ing != nil {
		l.ing.Stop(5 * time.Second)
	}
}

func (e *env) prefix(s string) string {
	e.runs++
	return fmt.Sprintf("r%d-%s", e.runs, s)
}

// snapshot reads the match's snapshot straight from a gateway (no proxy).
func snapshot(g *gateway, match string) (client.Snapshot, error) {
	var s client.Snapshot
	resp, err := http.Get(g.httpURL() + "/v1/matches/" + match)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("snapshot of %s: %d %s", match, resp.StatusCode, body)
	}
	return s, json.Unmarshal(body, &s)
}

// waitSnapshot waits until the match has a snapshot at seq ≥ min.
func waitSnapshot(g *gateway, match string, min uint64, within time.Duration) (client.Snapshot, error) {
	end := time.Now().Add(within)
	for {
		s, err := snapshot(g, match)
		if err == nil && s.Seq >= min {
			return s, nil
		}
		if time.Now().After(end) {
			return s, fmt.Errorf("no snapshot of %s at %d within %v (%v)", match, min, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric sums the samples of name on a gateway's /metrics whose labels contain every
// want.
func metric(g *gateway, name string, want ...string) float64 {
	resp, err := http.Get(g.httpURL() + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if i := strings.LastIndexByte(line, ' '); ok && i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			sum += v
		}
	}
	return sum
}

// cpu is the gateway's CPU seconds so far.
func (g *gateway) cpu() float64 {
	c, _ := procs.Stat(g.p.Pid())
	return c
}
