package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"crease/server/servertest"
)

// TestServeHelpDocumentsEveryFlag: `crease serve --help` exits 0 and lists every flag
// serve has, with the environment variable convention.
func TestServeHelpDocumentsEveryFlag(t *testing.T) {
	out, err := exec.Command(creaseBin(t), "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var g gatewayFlags
	var r redisFlags
	g.register(fs)
	r.register(fs)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(string(out), "  -"+f.Name+" ") && !strings.Contains(string(out), "  -"+f.Name+"\n") {
			t.Errorf("--help does not document -%s", f.Name)
		}
		if f.Usage == "" {
			t.Errorf("-%s has no usage text", f.Name)
		}
	})
	for _, want := range []string{"-op-rate float", "(default 20)", "twice --max-subscriptions", "closed with 4000", "bearer.JWT"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if !strings.Contains(string(out), "CREASE_<NAME>") || n < 20 {
		t.Errorf("help (%d flags) lacks the environment convention:\n%s", n, out)
	}
}

// TestServeRejectsBadConfig: invalid flag or environment values stop serve before it
// listens, with an error naming what is wrong.
func TestServeRejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  [2]string
		want string
	}{
		{"negative budget", []string{"--budget=-1"}, [2]string{}, "--budget must not be negative"},
		{"budget under 4 KiB", []string{"--budget=100"}, [2]string{}, "--budget: shard: budget must be at least 4 KiB"},
		{"stall not below cut", []string{"--stall-limit=30s", "--cut-limit=30s"}, [2]string{}, "--stall-limit/--cut-limit: shard: stall limit must be > 0 and below the cut limit"},
		{"negative restart gap", []string{"--restart-gap=-1s"}, [2]string{}, "--restart-gap must not be negative"},
		{"negative cut limit", []string{"--cut-limit=-1s"}, [2]string{}, "--cut-limit must not be negative"},
		{"negative handshake burst", []string{"--handshake-burst=-1"}, [2]string{}, "--handshake-burst must not be negative"},
		{"a list for a single Redis", []string{"--redis=127.0.0.1:1,127.0.0.1:2"}, [2]string{}, "a single Redis takes one"},
		{"bad log level", []string{"--log-level=loud"}, [2]string{}, `--log-level "loud"`},
		{"bad log format", []string{"--log-format=xml"}, [2]string{}, `--log-format "xml"`},
		{"env not a number", nil, [2]string{"CREASE_LOOPS", "abc"}, `CREASE_LOOPS="abc"`},
		{"env bad duration", nil, [2]string{"CREASE_DRAIN_WINDOW", "soon"}, `CREASE_DRAIN_WINDOW="soon"`},
		{"too many loops", []string{"--loops=65"}, [2]string{}, "--loops: server: loops must be between 1 and 64"},
		{"negative loops", []string{"--loops=-2"}, [2]string{}, "--loops must not be negative"},
		{"negative drain window", []string{"--drain-window=-1s"}, [2]string{}, "--drain-window must not be negative"},
		{"negative drain grace", []string{"--drain-grace=-1s"}, [2]string{}, "--drain-grace must not be negative"},
		{"negative handshake rate", []string{"--handshake-rate=-5"}, [2]string{}, "--handshake-rate must not be negative"},
		{"negative max conns", []string{"--max-conns=-1"}, [2]string{}, "--max-conns must not be negative"},
		{"heartbeat too short", []string{"--heartbeat=10ms"}, [2]string{}, "--heartbeat must be"},
		{"heartbeat with a sub-second remainder", []string{"--heartbeat=1500ms"}, [2]string{}, "--heartbeat must be a whole number of seconds"},
		{"zero op rate", []string{"--op-rate=0"}, [2]string{}, "--op-rate must be > 0"},
		{"negative op burst", []string{"--op-burst=-1"}, [2]string{}, "--op-burst not negative"},
		{"op debt over 30 minutes", []string{"--op-rate=0.01", "--op-burst=100"}, [2]string{}, "--op-rate/--op-burst: shard: op rate must be"},
		{"negative handshake timeout", []string{"--handshake-timeout=-1s"}, [2]string{}, "--handshake-timeout must not be negative"},
		{"negative shed lag", []string{"--shed-lag=-1ms"}, [2]string{}, "--shed-lag must not be negative"},
		{"unknown flag", []string{"--nope"}, [2]string{}, "flag provided but not defined: -nope"},
		{"stray argument", []string{"extra"}, [2]string{}, `unexpected argument "extra"`},
		{"cluster without redis", []string{"--redis-cluster"}, [2]string{}, "--redis-cluster needs --redis"},
		{"sentinel without redis", []string{"--redis-sentinel=crease"}, [2]string{}, "--redis-sentinel needs --redis"},
		{"sentinel and cluster", []string{"--redis=127.0.0.1:1", "--redis-sentinel=crease", "--redis-cluster"}, [2]string{}, "--redis-sentinel and --redis-cluster exclude each other"},
		{"sentinel name with a space", []string{"--redis=127.0.0.1:1", "--redis-sentinel=my master"}, [2]string{}, "Options.Sentinel must be a master name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			args := append([]string{"--ws-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--log-level=error"}, tc.args...)
			if tc.name == "bad log level" || tc.name == "bad log format" {
				args = append([]string{"--ws-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, tc.args...)
			}
			start := time.Now()
			err := runServeQuiet(ctx, args)
			if err == nil {
				t.Fatalf("%v accepted", tc.args)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if time.Since(start) > time.Second {
				t.Fatalf("refused only after %v (it started serving?)", time.Since(start))
			}
		})
	}
}

// The example environment file of deploy/ is what an operator installs as
// /etc/default/crease: every variable in it must be one serve takes, with a value it
// accepts (CREASE_BUDGET=64KiB once made crease.service fail at every start).
func TestDeployEnvFileParses(t *testing.T) {
	data, err := os.ReadFile("../../deploy/crease.env")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") || !strings.HasPrefix(k, "CREASE_") {
			continue
		}
		t.Setenv(k, v)
		n++
	}
	if n < 5 {
		t.Fatalf("only %d CREASE_ variables in deploy/crease.env", n)
	}
	if _, _, _, err := parseServe(nil, io.Discard); err != nil {
		t.Fatalf("deploy/crease.env: %v", err)
	}
	// Each variable names a flag of serve: a misspelt one would be ignored in silence.
	g, r, api := gatewayFlags{}, redisFlags{}, apiFlags{}
	cmd := newCommand("serve", "")
	cmd.register(&g, &r, &api)
	for line := range strings.Lines(string(data)) {
		k, _, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || !strings.HasPrefix(k, "CREASE_") {
			continue
		}
		found := false
		cmd.fs.VisitAll(func(f *flag.Flag) { found = found || envName(f.Name) == k })
		if !found {
			t.Errorf("deploy/crease.env sets %s, which is no flag of crease serve", k)
		}
	}
}

// runServeQuiet runs runServe with the flag package's usage output discarded.
func runServeQuiet(ctx context.Context, args []string) error {
	// The flag set prints usage on parse errors to stderr; the test only wants the error.
	return runServeWith(ctx, args, io.Discard)
}

// TestServeSIGTERMDrains: SIGTERM drains. By default (a restart in place) every client
// gets reconnect with after_ms past the restart gap, within the drain window after it,
// and is closed with 1012 within the gap's first half, and the process exits then; with
// --restart-gap=0 after_ms is within the window from now and each close comes at its
// after_ms. /readyz is 503 meanwhile.
func TestServeSIGTERMDrains(t *testing.T) {
	window, grace, gap := 2*time.Second, 3*time.Second, 2*time.Second
	for _, tc := range []struct {
		name                 string
		flag                 string
		afterLo, afterHi     time.Duration
		closeByAfter         bool          // each close at its after_ms
		closeWithin, exitsIn time.Duration // otherwise
	}{
		{name: "restart in place", flag: "--restart-gap=" + gap.String(), afterLo: gap, afterHi: gap + window,
			closeWithin: gap / 2, exitsIn: gap/2 + grace},
		{name: "paced", flag: "--restart-gap=0", afterLo: 0, afterHi: window, closeByAfter: true, exitsIn: window + grace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testSIGTERMDrain(t, window, grace, tc.flag, tc.afterLo, tc.afterHi, tc.closeByAfter, tc.closeWithin, tc.exitsIn)
		})
	}
}

func testSIGTERMDrain(t *testing.T, window, grace time.Duration, flag string, afterLo, afterHi time.Duration,
	closeByAfter bool, closeWithin, exitsIn time.Duration) {
	const n = 200
	p := startCrease(t, nil, "serve", "--log-level=warn", "--node=sub", "--loops=2",
		"--drain-window="+window.String(), "--drain-grace="+grace.String(), flag)
	conns := connectMany(t, p.ws, "/ws?match=m1", n, true)

	type seen struct {
		afterMS   int64
		closeCode int
		closedAt  time.Duration
		err       error
	}
	res := make([]seen, n)
	var wg sync.WaitGroup
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &res[i]
			r.afterMS = -1
			for {
				f, err := c.Next(time.Now().Add(window + grace))
				if err != nil {
					r.err = err
					return
				}
				if f.Close != 0 {
					r.closeCode, r.closedAt = f.Close, time.Since(start)
					return
				}
				if f.Type == "reconnect" {
					r.afterMS = f.AfterMS
				}
			}
		}()
	}
	servertest.Eventually(t, 5*time.Second, func() error { // the signal handled: the drain began
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d", resp.StatusCode)
		}
		return nil
	})
	checkDraining(t, p)
	p.waitExit(t, exitsIn+2*time.Second)
	exited := time.Since(start)
	wg.Wait()
	var lo, hi int64 = 1 << 62, 0
	for i, r := range res {
		due := time.Duration(r.afterMS) * time.Millisecond
		switch {
		case r.err != nil:
			t.Fatalf("client %d: %v", i, r.err)
		case due <= afterLo || due > afterHi:
			t.Fatalf("client %d: after_ms %d outside (%v, %v]", i, r.afterMS, afterLo, afterHi)
		case r.closeCode != 1012:
			t.Fatalf("client %d: close %d, want 1012", i, r.closeCode)
		case closeByAfter && (r.closedAt < due-100*time.Millisecond || r.closedAt > due+time.Second):
			t.Fatalf("client %d: closed at %v, after_ms %d", i, r.closedAt, r.afterMS)
		case !closeByAfter && r.closedAt > closeWithin+time.Second:
			t.Fatalf("client %d: closed at %v, want within %v", i, r.closedAt, closeWithin)
		}
		lo, hi = min(lo, r.afterMS), max(hi, r.afterMS)
	}
	t.Logf("%d clients: after_ms %d..%d, all 1012; process exited %v after SIGTERM", n, lo, hi, exited.Round(time.Millisecond))
	if exited > exitsIn {
		t.Errorf("exited %v after SIGTERM, more than %v", exited, exitsIn)
	}
}

// checkDraining: readiness 503, liveness 200, a new handshake 503 with Retry-After 1-5.
func checkDraining(t *testing.T, p *proc) {
	t.Helper()
	for path, want := range map[string]int{"/readyz": 503, "/healthz": 200} {
		resp, err := http.Get("http://" + p.http + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s %d during the drain, want %d", path, resp.StatusCode, want)
		}
	}
	c, resp, err := servertest.DialWS(p.ws, "/ws", nil, "")
	if c != nil || err != nil {
		t.Fatalf("handshake during the drain: upgraded=%v err=%v", c != nil, err)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 503 || ra < 1 || ra > 5 {
		t.Errorf("handshake during the drain: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestServeSecondSignalClosesAtOnce: SIGTERM starts a 30 s drain; a second SIGTERM
// closes every connection at once with 1001 and the process exits promptly.
func TestServeSecondSignalClosesAtOnce(t *testing.T) {
	const n = 100
	p := startCrease(t, nil, "serve", "--log-level=warn", "--loops=2", "--drain-window=30s")
	conns := connectMany(t, p.ws, "/ws", n, false)
	p.signal(t, syscall.SIGTERM)
	for i, c := range conns {
		f, err := c.Next(time.Now().Add(5 * time.Second))
		if err != nil || f.Type != "reconnect" {
			t.Fatalf("client %d: %s %v, want reconnect", i, f.Raw, err)
		}
	}
	checkDraining(t, p)
	second := time.Now()
	p.signal(t, syscall.SIGTERM)
	codes := map[int]int{}
	var slowest time.Duration
	for i, c := range conns {
		f, err := c.Next(time.Now().Add(5 * time.Second))
		if err != nil || f.Close == 0 {
			t.Fatalf("client %d: %s %v, want a close", i, f.Raw, err)
		}
		codes[f.Close]++
		slowest = max(slowest, time.Since(second))
	}
	p.waitExit(t, 10*time.Second)
	// The 30 s drain closes its first client (1012) after ~300 ms; the second signal
	// came before that.
	if codes[1001] != n {
		t.Errorf("close codes %v, want all %d 1001", codes, n)
	}
	if slowest > 2*time.Second {
		t.Errorf("last close %v after the second signal", slowest)
	}
	t.Logf("second SIGTERM: %d closes 1001 within %v; exit after %v", codes[1001], slowest.Round(time.Millisecond), (time.Since(second)).Round(time.Millisecond))
}
