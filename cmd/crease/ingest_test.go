package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	busredis "crease/bus/redis"
	"crease/client"
	"crease/ingest"
	"crease/internal/redistest"
	"crease/server"
	"crease/server/servertest"
)

// startIngest runs `crease ingest args...`.
func startIngest(t testing.TB, args ...string) *child {
	t.Helper()
	return startChild(t, append([]string{creaseBin(t), "ingest"}, args...)...)
}

// progress is how far a scorecard has got: runs and legal balls over every innings. No
// client may ever see it go back (the score never rewinds).
func progress(state []byte) int {
	var st struct {
		Innings map[string]struct{ Runs, Balls int } `json:"innings"`
	}
	_ = json.Unmarshal(state, &st)
	n := 0
	for _, c := range st.Innings {
		n += c.Runs + c.Balls
	}
	return n
}

// follower is a real client of a real gateway that records the score's progress.
type follower struct {
	check  *client.Checker
	states atomic.Int64 // states delivered: its progress
	mu     sync.Mutex
	back   []string // every time the score went back
	last   int
}

// converged waits until f has rebuilt final, for as long as it makes progress: how long
// a client takes to apply a few hundred scorecard deltas under the race detector on a
// loaded machine is no business of the test, a client that stopped getting them is.
func (f *follower) converged(t *testing.T, final client.Snapshot) {
	t.Helper()
	whileProgressing(t, 10*time.Second, f.states.Load, func() error { return f.check.Verify(final) })
}

func follow(t *testing.T, ws, httpBase, match string) *follower {
	t.Helper()
	f := &follower{check: client.NewChecker()}
	c, err := client.New(client.Options{URL: ws, BaseHTTP: httpBase, Observer: f.check, Logger: quietLog(),
		Backoff: client.Backoff{Base: 50 * time.Millisecond, Cap: 500 * time.Millisecond, InitialSpread: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(match, func(s client.State) {
		f.states.Add(1)
		p := progress(s.JSON)
		f.mu.Lock()
		if p < f.last {
			f.back = append(f.back, fmt.Sprintf("seq %d: %d after %d", s.Seq, p, f.last))
		}
		f.last = p
		f.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	servertest.Background(t, c.Run)
	return f
}

// matchStore is a world's match (and its file) and a reader of the store it is
// published to.
type matchStore struct {
	store *busredis.Bus
	file  string
	m     *ingest.Match
}

// stored is the epoch and seq at which the store holds the match ("", 0 if it holds
// none or does not answer within 2 s).
func (w *matchStore) stored() (string, uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := w.store.Stored(ctx, w.m.ID())
	if err != nil {
		return "", 0
	}
	return st.Epoch, st.Seq
}

// waitStored waits until the store holds the match at seq or later.
func (w *matchStore) waitStored(t testing.TB, seq uint64, within time.Duration) {
	t.Helper()
	servertest.Reaches(t, within, "stored seq", seq, func() uint64 {
		_, s := w.stored()
		return s
	})
}

// verifyFinal: the store holds the file's final state after exactly steps deltas
// (nothing replayed twice), and every follower rebuilt it (standing still for no
// longer than within) without losing a delta or seeing the score go back.
func (w *matchStore) verifyFinal(t *testing.T, steps int, within time.Duration, fs ...*follower) {
	t.Helper()
	verifyStored(t, w.store, w.m, uint64(steps), within, fs...)
}

type ingestWorld struct {
	matchStore
	redis *redistest.Server
	gw    *server.Server
}

func newIngestWorld(t *testing.T) *ingestWorld {
	t.Helper()
	w := &ingestWorld{redis: redistest.Start(t)}
	var err error
	if w.store, err = busredis.New(busredis.Options{Addrs: []string{w.redis.Addr()}, Logger: quietLog()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.store.Close() })
	gb, err := busredis.New(busredis.Options{Addrs: []string{w.redis.Addr()}, Logger: quietLog(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gb.Close() })
	w.gw = servertest.Run(t, server.Options{Bus: gb, Loops: 1})
	w.file, w.m = matchFile(t, "1359539")
	return w
}

// verifyStored: store holds m's final state at seq steps, and every follower rebuilds it
// (standing still for no longer than within) with nothing lost and the score never
// going back.
func verifyStored(t *testing.T, store *busredis.Bus, m *ingest.Match, steps uint64, within time.Duration, fs ...*follower) {
	t.Helper()
	st, err := store.Stored(context.Background(), m.ID())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(m.Final())
	if eq, _ := client.JSONEqual(st.State, want); !eq || st.Seq != steps {
		t.Fatalf("final at seq %d (want %d):\n%s\nwant (from scratch):\n%s", st.Seq, steps, st.State, want)
	}
	final := client.Snapshot{Match: m.ID(), Epoch: st.Epoch, Seq: st.Seq, State: st.State}
	for i, f := range fs {
		// For as long as the follower makes progress (see converged); within is how long
		// it may stand still.
		whileProgressing(t, within, f.states.Load, func() error { return f.check.Verify(final) })
		f.mu.Lock()
		if len(f.back) > 0 {
			t.Errorf("client %d saw the score go back: %v", i, f.back)
		}
		f.mu.Unlock()
	}
}

// kill -9 the ingest mid-match and start it again: it resumes at the next ball (same
// epoch, next seq), no client ever sees the score go back, and the final state equals a
// from-scratch computation of the file.
func TestIngestKill9AndRestart(t *testing.T) {
	t.Parallel()
	w := newIngestWorld(t)
	fs := []*follower{follow(t, servertest.WSURL(w.gw, ""), servertest.HTTPURL(w.gw), w.m.ID()),
		follow(t, servertest.WSURL(w.gw, ""), servertest.HTTPURL(w.gw), w.m.ID())}
	args := []string{"--redis", w.redis.Addr(), "--match", w.file, "--speed", "150"}
	p := startIngest(t, args...)
	w.waitStored(t, 60, 20*time.Second)
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: no chance to clean up
		t.Fatal(err)
	}
	<-p.exited
	before, err := w.store.Stored(context.Background(), w.m.ID())
	if err != nil {
		t.Fatal(err)
	}
	q := startIngest(t, args...)
	if err := q.wait(t, 60*time.Second); err != nil {
		t.Fatalf("restarted ingest: %v", err)
	}
	if out := q.out.String(); !strings.Contains(out, "resuming match") || !strings.Contains(out, fmt.Sprintf("after_seq=%d", before.Seq)) {
		t.Fatalf("restart did not resume after seq %d:\n%s", before.Seq, out)
	}
	after, _ := w.store.Stored(context.Background(), w.m.ID())
	if after.Epoch != before.Epoch {
		t.Fatalf("epoch changed across the restart: %s -> %s", before.Epoch, after.Epoch)
	}
	w.verifyFinal(t, w.m.Steps(), 10*time.Second, fs...)
}

// Two ingest processes for one match: the store refuses the loser, which stops with an
// error; the winner finishes the match and it is exact.
func TestTwoIngestProcessesTheLoserIsRefused(t *testing.T) {
	t.Parallel()
	w := newIngestWorld(t)
	f := follow(t, servertest.WSURL(w.gw, ""), servertest.HTTPURL(w.gw), w.m.ID())
	args := []string{"--redis", w.redis.Addr(), "--match", w.file, "--speed", "100"}
	a := startIngest(t, args...)
	w.waitStored(t, 10, 20*time.Second)
	b := startIngest(t, args...)
	errA, errB := a.wait(t, 60*time.Second), b.wait(t, 60*time.Second)
	var ee *exec.ExitError
	switch {
	case errA == nil && errors.As(errB, &ee) && strings.Contains(b.out.String(), "refused"):
	case errB == nil && errors.As(errA, &ee) && strings.Contains(a.out.String(), "refused"):
	default:
		t.Fatalf("want exactly one loser, refused: a %v, b %v", errA, errB)
	}
	w.verifyFinal(t, w.m.Steps(), 10*time.Second, f)
}

// One bad file never stops the others: the good match is published in full, the bad
// one refused with its error, and the command succeeds; with only bad files it fails.
func TestIngestOneBadFileNeverStopsTheOthers(t *testing.T) {
	t.Parallel()
	w := newIngestWorld(t)
	data, _ := os.ReadFile(w.file)
	bad := filepath.Join(t.TempDir(), "cut.json")
	if err := os.WriteFile(bad, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	p := startIngest(t, "--redis", w.redis.Addr(), "--match", w.file, "--match", bad, "--match", "/nonexistent.json", "--speed", "0")
	if err := p.wait(t, 60*time.Second); err != nil {
		t.Fatalf("ingest with one good file: %v", err)
	}
	if out := p.out.String(); !strings.Contains(out, "cut.json") || !strings.Contains(out, "truncated") || !strings.Contains(out, "nonexistent.json") {
		t.Fatalf("the refusals are not reported:\n%s", out)
	}
	w.verifyFinal(t, w.m.Steps(), 10*time.Second)
	q := startIngest(t, "--redis", w.redis.Addr(), "--match", bad)
	if err := q.wait(t, 30*time.Second); err == nil || !strings.Contains(q.out.String(), "nothing to publish") {
		t.Fatalf("only bad files: %v\n%s", err, q.out.String())
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// kill -9 `crease ingest --listen` mid-match: a new process resumes every match from the
// store (its journal), answers a retried ball with the seq it got, and takes the next
// ball; the match posted ball by ball ends equal to its file, and no client ever saw the
// score go back.
func TestIngestAPIKill9AndRestart(t *testing.T) {
	t.Parallel()
	w := newIngestWorld(t)
	f := follow(t, servertest.WSURL(w.gw, ""), servertest.HTTPURL(w.gw), w.m.ID())
	start, end, balls := apiFeed(t, w.m.ID())
	listen := servertest.FreeAddr(t)
	args := []string{"--redis", w.redis.Addr(), "--listen", listen, "--api-key", "K"}
	up := func() *child {
		p := startIngest(t, args...)
		servertest.Eventually(t, 15*time.Second, func() error {
			resp, err := http.Get("http://" + listen + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err
		})
		return p
	}
	post := func(method, path string, body []byte) (int, string) {
		t.Helper()
		return apiRequest(t, method, "http://"+listen+path, string(body), "K")
	}
	p := up()
	path := "/v1/matches/" + w.m.ID()
	if code, body := post("PUT", path, start); code != 201 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	half := len(balls) / 2
	for i, b := range balls[:half] {
		if code, body := post("POST", path+"/deliveries", b); code != 200 {
			t.Fatalf("ball %d: %d %s", i, code, body)
		}
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	up()
	// The provider's retry of the last ball it sent: answered from the stored journal.
	if code, body := post("POST", path+"/deliveries", balls[half-1]); code != 200 || !strings.Contains(body, fmt.Sprintf(`"seq":%d,"result":"duplicate"`, half+1)) {
		t.Fatalf("retry after the restart: %d %s", code, body)
	}
	for i, b := range balls[half:] {
		if code, body := post("POST", path+"/deliveries", b); code != 200 {
			t.Fatalf("ball %d after the restart: %d %s", half+i, code, body)
		}
	}
	if code, body := post("PUT", path, end); code != 200 {
		t.Fatalf("result: %d %s", code, body)
	}
	st, err := w.store.Stored(context.Background(), w.m.ID())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(w.m.Final())
	if eq, _ := client.JSONEqual(st.State, want); !eq || st.Seq != uint64(len(balls)+2) {
		t.Fatalf("final at seq %d:\n%s\nwant the file's:\n%s", st.Seq, st.State, want)
	}
	final := client.Snapshot{Match: w.m.ID(), Epoch: st.Epoch, Seq: st.Seq, State: st.State}
	f.converged(t, final)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.back) > 0 {
		t.Fatalf("the score went back: %v", f.back)
	}
}
