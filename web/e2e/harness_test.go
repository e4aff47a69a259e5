package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"crease/bus"
	"crease/ingest"
	"crease/internal/testenv"
	"crease/server"
	"crease/server/servertest"
	"crease/web"
)

// ---- the browser ----

var (
	browserOnce sync.Once
	browserCtx  context.Context
	browserStop func()
	browserErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if browserStop != nil {
		browserStop()
	}
	os.Exit(code)
}

// chromiumPath finds the browser, or skips the test (fails it when CI is set).
func chromiumPath(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("CREASE_CHROMIUM"), "/usr/bin/chromium"}
	if p, err := exec.LookPath("chromium"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	const msg = "chromium not found (/usr/bin/chromium, CREASE_CHROMIUM or PATH): " +
		"install it with `apt-get install -y chromium` (make test does, via scripts/ensure-deps.sh)"
	testenv.Missing(t, msg)
	return ""
}

// startBrowser starts the one headless Chromium of the package, with a fresh profile.
func startBrowser(path string) (context.Context, func(), error) {
	dir, err := os.MkdirTemp("", "crease-e2e-chromium-")
	if err != nil {
		return nil, nil, err
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
		// Several tabs share the browser: none may be throttled as a background tab.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	stop := func() {
		cancel()
		cancelAlloc()
		os.RemoveAll(dir)
	}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to no timeout
		stop()
		return nil, nil, fmt.Errorf("starting %s: %w", path, err)
	}
	return ctx, stop, nil
}

// statusRecorder runs in the page before its own scripts: it keeps every value that
// body[data-status] took, for window.__creaseStatuses().
const statusRecorder = `(() => {
  const hist = [];
  window.__creaseStatuses = () => hist.concat(document.body ? [document.body.dataset.status || ""] : []);
  new MutationObserver((recs) => {
    for (const r of recs) if (r.target === document.body) hist.push(r.oldValue || "");
  }).observe(document, { subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ["data-status"] });
})();`

// newTab opens a tab in the shared browser, closed when the test ends. Its context has
// a deadline of limit. Each of scripts runs in every page before the page's own.
func newTab(t *testing.T, limit time.Duration, scripts ...string) context.Context {
	t.Helper()
	path := chromiumPath(t)
	browserOnce.Do(func() { browserCtx, browserStop, browserErr = startBrowser(path) })
	if browserErr != nil {
		t.Fatalf("browser: %v", browserErr)
	}
	tab, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil { // opens the tab with no deadline
		t.Fatalf("opening a tab: %v", err)
	}
	for _, src := range append([]string{statusRecorder}, scripts...) {
		if _, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument,
			page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
			t.Fatalf("installing a script before the page's: %v", err)
		}
	}
	ctx, cancelT := context.WithTimeout(tab, limit)
	t.Cleanup(cancelT)
	return ctx
}

// navigate opens the page of match on gateway s.
func navigate(t *testing.T, ctx context.Context, httpBase, match string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(httpBase+"/?match="+match)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
}

// view is what the page shows, read in one evaluation (so seq and score agree).
type view struct {
	Seq      uint64   `json:"seq"`
	Match    string   `json:"match"`
	Score    string   `json:"score"`
	Overs    string   `json:"overs"`
	Status   string   `json:"status"`
	Badge    string   `json:"badge"`
	Statuses []string `json:"statuses"`
}

const readView = `(() => {
  const board = document.getElementById("board");
  const text = (id) => (document.getElementById(id) || {}).textContent || "";
  return {
    seq: Number(board ? board.dataset.seq : 0) || 0,
    match: board ? board.dataset.match || "" : "",
    score: text("score"),
    overs: text("overs"),
    status: document.body ? document.body.dataset.status || "" : "",
    badge: text("status"),
    statuses: window.__creaseStatuses ? window.__creaseStatuses() : [],
  };
})()`

func look(ctx context.Context) (view, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[view](readView))
}

// waitView polls the page until cond holds, failing the test after timeout.
func waitView(t *testing.T, ctx context.Context, timeout time.Duration, what string, cond func(view) bool) view {
	t.Helper()
	var last view
	servertest.Eventually(t, timeout, func() error {
		v, err := look(ctx)
		if err != nil {
			return fmt.Errorf("page: waiting for %s: %w", what, err)
		}
		last = v
		if !cond(v) {
			return fmt.Errorf("page: waiting for %s; last view %+v", what, v)
		}
		return nil
	})
	return last
}

// pageGateway runs a gateway with one loop serving the page (opts.Page, or the page of
// package web) on a fresh test bus, and a recorder publishing onto that bus.
func pageGateway(t *testing.T, opts server.Options) (*recorder, *servertest.Bus, string) {
	t.Helper()
	b := servertest.NewBus()
	opts.Bus, opts.Loops = b, 1
	if opts.Page == nil {
		opts.Page = web.Handler()
	}
	s := servertest.Run(t, opts)
	return newRecorder(b), b, servertest.HTTPURL(s)
}

// ---- the bus ----

// recorder is a Publisher that remembers the score of the state published at each seq,
// so that anything the page shows can be checked against the state at its seq.
type recorder struct {
	bus.Publisher
	mu     sync.Mutex
	scores map[uint64]string
	last   uint64
	after  func(seq uint64) // called after each delta published, if set
}

func newRecorder(p bus.Publisher) *recorder {
	return &recorder{Publisher: p, scores: map[uint64]string{}}
}

func (r *recorder) PublishDelta(ctx context.Context, d bus.Delta) error {
	var st struct {
		Score struct {
			Runs    int `json:"runs"`
			Wickets int `json:"wickets"`
		} `json:"score"`
	}
	if err := json.Unmarshal(d.State, &st); err != nil {
		return err
	}
	r.mu.Lock()
	r.scores[d.Seq] = fmt.Sprintf("%d/%d", st.Score.Runs, st.Score.Wickets)
	r.mu.Unlock()
	if err := r.Publisher.PublishDelta(ctx, d); err != nil {
		return err
	}
	r.mu.Lock()
	r.last = d.Seq
	r.mu.Unlock()
	if r.after != nil {
		r.after(d.Seq)
	}
	return nil
}

// score returns the score published at seq.
func (r *recorder) score(seq uint64) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.scores[seq]
	return s, ok
}

func (r *recorder) lastSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// waitSeq waits until seq has been published.
func (r *recorder) waitSeq(t *testing.T, seq uint64, timeout time.Duration) {
	t.Helper()
	servertest.Eventually(t, timeout, func() error {
		if at := r.lastSeq(); at < seq {
			return fmt.Errorf("replay: seq %d not published (at %d)", seq, at)
		}
		return nil
	})
}

// ---- the match ----

// replay is one ingest.Replay running in the background.
type replay struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startReplay(t *testing.T, pub bus.Publisher, m *ingest.Match, speed float64) *replay {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replay{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- ingest.Replay(ctx, pub, m, ingest.ReplayOptions{Speed: speed}) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the replay and waits for it; an error other than the cancel fails the test.
func (r *replay) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
		if r.err != nil && !errors.Is(r.err, context.Canceled) {
			t.Errorf("replay: %v", r.err)
		}
	})
}

// ---- the gateway from outside ----

// restSnapshot is GET /v1/matches/{id}, with the score as the page writes it.
type restSnapshot struct {
	Seq   uint64
	Score string
}

// getSnapshot sends the token, if one is given, as Authorization: Bearer (a gateway with
// --jwt-secret wants it on the HTTP API too).
func getSnapshot(t *testing.T, httpBase, match string, token ...string) restSnapshot {
	t.Helper()
	req, err := http.NewRequest("GET", httpBase+"/v1/matches/"+match, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range token {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET snapshot: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET snapshot: HTTP %d", resp.StatusCode)
	}
	var s struct {
		Match string `json:"match"`
		Seq   uint64 `json:"seq"`
		State struct {
			Score *struct {
				Runs    int `json:"runs"`
				Wickets int `json:"wickets"`
			} `json:"score"`
		} `json:"state"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("GET snapshot: %v", err)
	}
	if s.Match != match || s.State.Score == nil {
		t.Fatalf("GET snapshot: match %q, score %v", s.Match, s.State.Score)
	}
	return restSnapshot{Seq: s.Seq, Score: fmt.Sprintf("%d/%d", s.State.Score.Runs, s.State.Score.Wickets)}
}
