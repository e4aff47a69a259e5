package e2e_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"crease/internal/npmtest"
	"crease/server"
	"crease/server/servertest"
	"crease/web"
)

// packedClient serves the page with the client's modules (crease-client.js and those it
// imports) taken from the npm tarball (as `npm pack` wrote them) instead of the copies
// embedded in the binary, counting the loads of the entry.
type packedClient struct {
	page    http.Handler
	modules map[string][]byte // by path: /crease-client.js...
	loads   atomic.Int64
}

func (p *packedClient) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := p.modules[r.URL.Path]
	if !ok {
		p.page.ServeHTTP(w, r)
		return
	}
	if r.URL.Path == "/crease-client.js" {
		p.loads.Add(1)
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(body)
}

// TestPageRunsOnThePackedClient: the scoreboard page, importing crease-client.js from the
// packed npm package, goes live in Chromium while a real match replays and converges to
// the REST snapshot, every score it shows being the one published at its seq.
func TestPageRunsOnThePackedClient(t *testing.T) {
	ctx := newTab(t, 60*time.Second)
	pkg := npmtest.Pack(t)
	t.Cleanup(npmtest.Cleanup) // the only test of this package that packs
	if _, ok := pkg.Files["crease-client.js"]; !ok {
		t.Fatal("the packed package has no crease-client.js")
	}
	page := &packedClient{page: web.Handler(), modules: map[string][]byte{}}
	for name, body := range pkg.Files {
		if strings.HasSuffix(name, ".js") {
			page.modules["/"+name] = body
		}
	}
	m := servertest.RealMatch(t)
	rec, _, base := pageGateway(t, server.Options{Page: page})

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
