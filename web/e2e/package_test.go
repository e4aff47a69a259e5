package e2e

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"crease/internal/npmtest"
	"crease/server"
	"crease/server/servertest"
	"crease/web"
)

// packedClient serves the page with crease-client.js taken from the npm tarball (as
// `npm pack` wrote it) instead of the copy embedded in the binary, counting its loads.
type packedClient struct {
	page   http.Handler
	client []byte
	loads  atomic.Int64
}

func (p *packedClient) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/crease-client.js" {
		p.page.ServeHTTP(w, r)
		return
	}
	p.loads.Add(1)
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(p.client)
}

// TestPageRunsOnThePackedClient: the scoreboard page, importing crease-client.js from the
// packed npm package, goes live in Chromium while a real match replays and converges to
// the REST snapshot, every score it shows being the one published at its seq.
func TestPageRunsOnThePackedClient(t *testing.T) {
	ctx := newTab(t, 60*time.Second)
	pkg := npmtest.Pack(t)
	client, ok := pkg.Files["crease-client.js"]
	if !ok {
		t.Fatal("the packed package has no crease-client.js")
	}
	page := &packedClient{page: web.Handler(), client: client}
	m := firstMatch(t)
	b := servertest.NewBus()
	rec := newRecorder(b)
	s := servertest.Run(t, server.Options{Bus: b, Page: page, Loops: 1})
	base := servertest.HTTPURL(s)

	rp := startReplay(t, rec, m, replaySpeed)
	rec.waitSeq(t, 5, 10*time.Second)
	navigate(t, ctx, base, m.ID())
	first := waitView(t, ctx, 15*time.Second, "live with a state", func(v view) bool { return v.Status == "live" && v.Seq > 0 })
	checkAgainstReplay(t, rec, first)
	rec.waitSeq(t, first.Seq+10, 10*time.Second)
	moved := waitView(t, ctx, 10*time.Second, "deltas applied", func(v view) bool { return v.Seq >= first.Seq+10 })
	checkAgainstReplay(t, rec, moved)
	converge(t, ctx, rp, base, m.ID())
	if n := page.loads.Load(); n < 1 {
		t.Errorf("the page never loaded crease-client.js from the package (%d loads)", n)
	}
}
