package publish_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	busredis "crease/bus/redis"
	"crease/client"
	"crease/ingest"
	"crease/publish"
	"crease/server"
	"crease/server/servertest"
)

const key = "k-test"

var quiet = slog.New(slog.DiscardHandler)

// api is a publish API on a bus, served over real HTTP.
type api struct {
	t   testing.TB
	url string
	api *publish.API
}

func startAPI(t testing.TB, b publish.Store, tune func(*publish.Options)) *api {
	t.Helper()
	o := publish.Options{Bus: b, Keys: []string{"other-key", key}, Logger: quiet, Registerer: prometheus.NewRegistry()}
	if tune != nil {
		tune(&o)
	}
	a, err := publish.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &api{t: t, url: srv.URL, api: a}
}

// reply is an answer of the API.
type reply struct {
	code   int
	header http.Header
	body   []byte
	pos    struct {
		Match, Epoch, Result string
		Seq                  uint64
	}
	problem struct {
		Type, Title, Detail, Code string
		Status                    int
	}
}

func (r reply) String() string { return fmt.Sprintf("HTTP %d %s", r.code, r.body) }

// do sends a request; hdr holds extra header pairs.
func (a *api) do(method, path string, body any, hdr ...string) reply {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	r := reply{code: resp.StatusCode, header: resp.Header}
	r.body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode < 300 {
		if err := json.Unmarshal(r.body, &r.pos); err != nil {
			a.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, r.body)
		}
	} else {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			a.t.Fatalf("%s %s: %d with Content-Type %q: %s", method, path, resp.StatusCode, ct, r.body)
		}
		if err := json.Unmarshal(r.body, &r.problem); err != nil || r.problem.Status != resp.StatusCode || r.problem.Detail == "" {
			a.t.Fatalf("%s %s: problem %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// must fails unless the answer has the given status.
func (r reply) must(t testing.TB, code int) reply {
	t.Helper()
	if r.code != code {
		t.Fatalf("want HTTP %d, got %s", code, r)
	}
	return r
}

// feed is a real match as a score provider posts it.
type feed struct {
	m          *ingest.Match
	start, end json.RawMessage
	balls      []ingest.BallPost
}

func realFeed(t testing.TB, name string) feed {
	t.Helper()
	m, err := ingest.ReadMatch(name+".json", servertest.MatchFile(t, name))
	if err != nil {
		t.Fatal(err)
	}
	lf := servertest.LiveFeed(t, name)
	f := feed{m: m, start: lf.Start, end: lf.End}
	for _, body := range lf.Balls {
		p, err := ingest.DecodeBall(body)
		if err != nil {
			t.Fatal(err)
		}
		f.balls = append(f.balls, p)
	}
	return f
}

// gateway is a real gateway on a Redis bus.
type gateway struct {
	s *server.Server
}

func (g *gateway) http() string { return servertest.HTTPURL(g.s) }

func startGateway(t testing.TB, addr string) *gateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := busredis.New(busredis.Options{Addrs: []string{addr}, Registerer: reg, Logger: quiet, HealthInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return &gateway{s: servertest.Run(t, server.Options{Bus: b, Registerer: reg, Gatherer: reg, Loops: 2})}
}

func redisBus(t testing.TB, addr string) *busredis.Bus {
	t.Helper()
	b, err := busredis.New(busredis.Options{Addrs: []string{addr}, Logger: quiet, HealthInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// watcher is a real Go client following one match through a gateway, checked.
type watcher struct {
	check *client.Checker
	mu    sync.Mutex
	seqs  []uint64 // seqs of the deltas, in order, of the current epoch
	runs  []int    // the score's runs after each delta applied
}

func watch(t testing.TB, g *gateway, match string) *watcher {
	t.Helper()
	w := &watcher{check: client.NewChecker()}
	c, err := client.New(client.Options{
		URL: servertest.WSURL(g.s, ""), BaseHTTP: g.http(), Observer: w.check,
		Backoff: client.Backoff{Base: 50 * time.Millisecond, Cap: 500 * time.Millisecond, InitialSpread: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(match, func(s client.State) {
		var st struct {
			Score struct{ Runs int } `json:"score"`
		}
		_ = json.Unmarshal(s.JSON, &st)
		w.mu.Lock()
		w.seqs = append(w.seqs, s.Seq)
		w.runs = append(w.runs, st.Score.Runs)
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	servertest.Background(t, c.Run)
	return w
}

// snapshot fetches the snapshot of match from a gateway.
func snapshot(t testing.TB, g *gateway, match string) client.Snapshot {
	t.Helper()
	return servertest.MustGetJSON[client.Snapshot](t, g.http()+"/v1/matches/"+match)
}

// verify waits until every watcher rebuilt the gateway's final snapshot of match.
func verify(t testing.TB, g *gateway, match string, ws ...*watcher) client.Snapshot {
	t.Helper()
	final := snapshot(t, g, match)
	for i, w := range ws {
		servertest.Eventually(t, 10*time.Second, func() error {
			if v := w.check.Violations(); len(v) > 0 {
				t.Fatalf("client %d: %v", i, v)
			}
			return w.check.Verify(final)
		})
	}
	return final
}

// stored reads the store's position of match.
func stored(t testing.TB, s bus.Resumer, match string) bus.Stored {
	t.Helper()
	st, err := s.Stored(context.Background(), match)
	if err != nil {
		t.Fatalf("stored %s: %v", match, err)
	}
	return st
}
