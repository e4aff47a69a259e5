package e2e_test

// The page under contract version 2 in Chromium: the backoff does not start over on
// `hello` alone (a gateway that closes right after it sees the delays grow), a token in
// the page's URL goes to the gateway as the bearer.<jwt> subprotocol and as
// Authorization: Bearer (and out of the address bar), and a match outside the token's
// claim is refused without holding the status at resyncing.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"crease/ingest"
	"crease/internal/jwttest"
	"crease/server"
	"crease/server/servertest"
	"crease/web"
)

// helloThenClose is a gateway that closes right after the upgrade: it says hello, and closes at
// once. It serves the page too, with /config.json pointing at itself.
type helloThenClose struct {
	mu    sync.Mutex
	dials []time.Time
}

func (g *helloThenClose) times() []time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.dials)
}

func startHelloThenClose(t *testing.T) (*helloThenClose, string) {
	t.Helper()
	g := &helloThenClose{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.dials = append(g.dials, time.Now())
		g.mu.Unlock()
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello","node":"closer","heartbeat_s":25}`))
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "bye"), time.Now().Add(time.Second))
		c.Close()
	})
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"ws":"ws://%s/ws"}`, ln.Addr())
	})
	mux.HandleFunc("GET /v1/matches", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `[]`) })
	mux.HandleFunc("GET /v1/matches/{id}", http.NotFound)
	mux.Handle("/", web.Handler())
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return g, base
}

// fixedRandom makes the page's jitter a known fraction of each window.
const fixedRandom = `Math.random = () => 0.01;`

func TestPageBacksOffFromAGatewayThatClosesAfterHello(t *testing.T) {
	ctx := newTab(t, 60*time.Second, fixedRandom)
	g, base := startHelloThenClose(t)
	navigate(t, ctx, base, "m1")
	// 0.01 of the windows 5 s (the spread floor) x4, 8 s, 16 s, 30 s: 50, 50, 50, 50, 80,
	// 160, 300 ms. A client that reset its attempts on `hello` would stay at 50 ms.
	want := []time.Duration{50, 50, 50, 50, 80, 160, 300}
	servertest.Eventually(t, 20*time.Second, func() error {
		if n := len(g.times()); n < len(want)+1 {
			return fmt.Errorf("%d connections so far", n)
		}
		return nil
	})
	ts := g.times()
	var gaps []time.Duration
	for i := 1; i <= len(want); i++ {
		gaps = append(gaps, ts[i].Sub(ts[i-1]).Round(time.Millisecond))
	}
	for i, w := range want {
		// A timer never fires early; the close's trip to the page only adds to the gap.
		if gaps[i] < w*time.Millisecond-5*time.Millisecond {
			t.Fatalf("gaps between connections %v: gap %d shorter than its delay %v ms", gaps, i+1, w)
		}
	}
	v, err := look(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(v.Statuses, "live") {
		t.Errorf("statuses %v: live although no connection lasted", compact(v.Statuses))
	}
	t.Logf("gaps between connections: %v; statuses %v", gaps, compact(v.Statuses))
}

// netLog records what the page sends, from the DevTools protocol.
type netLog struct {
	mu        sync.Mutex
	wsHeaders []map[string]any // the handshake requests' headers
	wsURLs    []string
	gets      map[string][]string // URL -> Authorization headers sent
	errors    []string            // error frames received
}

func listenNet(t *testing.T, ctx context.Context) *netLog {
	t.Helper()
	n := &netLog{gets: map[string][]string{}}
	if err := chromedp.Listen(ctx, func(ev any) {
		n.mu.Lock()
		defer n.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventWebSocketWillSendHandshakeRequest:
			n.wsHeaders = append(n.wsHeaders, ev.Request.Headers)
		case *network.EventWebSocketCreated:
			n.wsURLs = append(n.wsURLs, ev.URL)
		case *network.EventRequestWillBeSent:
			auth, _ := ev.Request.Headers["Authorization"].(string)
			n.gets[ev.Request.URL] = append(n.gets[ev.Request.URL], auth)
		case *network.EventWebSocketFrameReceived:
			var f struct{ Type, Code, Match string }
			if json.Unmarshal([]byte(ev.Response.PayloadData), &f) == nil && f.Type == "error" {
				n.errors = append(n.errors, f.Code+":"+f.Match)
			}
		}
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	return n
}

func headerValue(h map[string]any, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

func mintToken(t *testing.T, secret []byte, matches ...string) string {
	t.Helper()
	return jwttest.Mint(t, secret, "viewer", time.Now().Add(time.Hour), matches...)
}

// openWithToken opens a tab, logging its traffic, on a page of a gateway with JWT auth
// whose address carries a token for matches (none given: every match), once the first
// match's replay has reached seq 5.
func openWithToken(t *testing.T, matches ...string) (context.Context, *netLog, *ingest.Match, *recorder, *replay, string, string) {
	t.Helper()
	ctx := newTab(t, 60*time.Second)
	nl := listenNet(t, ctx)
	secret := []byte("e2e-secret")
	m := servertest.RealMatch(t)
	rec, _, base := pageGateway(t, server.Options{JWTSecret: secret})
	rp := startReplay(t, rec, m, replaySpeed)
	rec.waitSeq(t, 5, 10*time.Second)
	tok := mintToken(t, secret, matches...)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?match="+m.ID()+"&token="+tok)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	return ctx, nl, m, rec, rp, base, tok
}

func TestPageWithATokenInItsURL(t *testing.T) {
	ctx, nl, m, rec, rp, base, tok := openWithToken(t)
	first := waitView(t, ctx, 15*time.Second, "live with a state", func(v view) bool { return v.Status == "live" && v.Seq > 0 })
	checkAgainstReplay(t, rec, first)
	loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(loc, "token") || !strings.Contains(loc, "match="+m.ID()) {
		t.Errorf("address bar %s: want the match and no token", loc)
	}
	converge(t, ctx, rp, base, m.ID(), tok)

	nl.mu.Lock()
	defer nl.mu.Unlock()
	if len(nl.wsHeaders) != 1 || headerValue(nl.wsHeaders[0], "Sec-WebSocket-Protocol") != "bearer."+tok {
		t.Errorf("WebSocket handshakes %v: want one offering bearer.<the token>", nl.wsHeaders)
	}
	for _, u := range nl.wsURLs {
		if strings.Contains(u, "token") {
			t.Errorf("the WebSocket URL %s carries the token", u)
		}
		if !strings.Contains(u, "catchup=1") {
			t.Errorf("the WebSocket URL %s does not opt in to catch-up deltas", u)
		}
	}
	snap := base + "/v1/matches/" + m.ID()
	if auths := nl.gets[snap]; len(auths) == 0 || auths[0] != "Bearer "+tok {
		t.Errorf("snapshot GETs with Authorization %q, want Bearer <the token>", auths)
	}
	if auths := nl.gets[base+"/v1/matches"]; len(auths) == 0 || auths[0] != "Bearer "+tok {
		t.Errorf("match list GETs with Authorization %q, want Bearer <the token>", auths)
	}
}

func TestPageForbiddenMatchDoesNotHoldTheStatus(t *testing.T) {
	ctx, nl, m, rec, rp, _, _ := openWithToken(t, "another-match")
	t.Cleanup(func() { rp.stop(t) })
	v := waitView(t, ctx, 15*time.Second, "live, the match refused", func(v view) bool { return v.Status == "live" })
	var board string
	servertest.Eventually(t, 10*time.Second, func() error {
		var err error
		if board, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("match-status").textContent`)); err != nil {
			return err
		}
		if !strings.Contains(board, "does not allow") {
			return fmt.Errorf("board says %q", board)
		}
		return nil
	})
	// Live, and it stays live on the one connection: no reconnect loop.
	rec.waitSeq(t, rec.lastSeq()+10, 10*time.Second)
	v, err := look(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != "live" || v.Seq != 0 {
		t.Errorf("status %q at seq %d; want live with no state of the refused match", v.Status, v.Seq)
	}
	nl.mu.Lock()
	defer nl.mu.Unlock()
	if len(nl.wsURLs) != 1 || !slices.Contains(nl.errors, "forbidden:"+m.ID()) {
		t.Errorf("%d WebSockets, errors %v; want 1 and forbidden for %s", len(nl.wsURLs), nl.errors, m.ID())
	}
	t.Logf("statuses %v; board %q", compact(v.Statuses), board)
}
