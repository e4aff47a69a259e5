package client

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"crease/internal/jwttest"
)

var testSecret = []byte("client-test-secret")

// mint signs an HS256 token expiring at exp, with an optional matches claim.
func mint(t *testing.T, exp time.Time, matches ...string) string {
	t.Helper()
	return jwttest.Mint(t, testSecret, "test", exp, matches...)
}

func TestTokenExpiry(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	if got, ok := TokenExpiry(mint(t, exp)); !ok || !got.Equal(exp) {
		t.Fatalf("TokenExpiry = %v, %v", got, ok)
	}
	payload := func(s string) string {
		return "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(s)) + ".sig"
	}
	if got, ok := TokenExpiry(payload(`{"exp":1900000000.5}`)); !ok || got != exp.Add(500*time.Millisecond) {
		t.Fatalf("fractional exp: %v, %v", got, ok)
	}
	for _, bad := range []string{"", "abc", "a.b", "a.!!!.c", payload(`{}`), payload(`{"exp":"soon"}`), payload(`{"exp":-1}`), payload(`[1]`), payload(`{"exp":1e300}`)} {
		if _, ok := TokenExpiry(bad); ok {
			t.Errorf("TokenExpiry(%q) ok", bad)
		}
	}
}

func TestRefreshDelay(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, c := range []struct {
		left, margin, want time.Duration
	}{
		{time.Hour, 30 * time.Second, time.Hour - 30*time.Second},
		{60 * time.Second, 30 * time.Second, 30 * time.Second},
		{20 * time.Second, 30 * time.Second, 10 * time.Second}, // half the lifetime, not at once
		{time.Second, 30 * time.Second, time.Second},           // never sooner than 1 s
		{-time.Minute, 30 * time.Second, time.Second},          // expired already
	} {
		if got := refreshDelay(now, now.Add(c.left), c.margin); got != c.want {
			t.Errorf("refreshDelay(left %v, margin %v) = %v, want %v", c.left, c.margin, got, c.want)
		}
	}
}

// tokenMinter is a token provider minting a new token per call on clk.
type tokenMinter struct {
	t        *testing.T
	clk      clock
	lifetime time.Duration
	mu       sync.Mutex
	issued   []string
	matches  []string
	fail     atomic.Bool
}

func (m *tokenMinter) provide(context.Context) (string, error) {
	if m.fail.Load() {
		return "", errors.New("identity provider down")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Distinct tokens even within one second: the exp moves on by a second each time.
	exp := m.clk.Now().Add(m.lifetime + time.Duration(len(m.issued))*time.Second)
	tok := mint(m.t, exp, m.matches...)
	m.issued = append(m.issued, tok)
	return tok, nil
}

func (m *tokenMinter) last() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.issued[len(m.issued)-1]
}

func (m *tokenMinter) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.issued)
}

// goodToken is the gateway's check in the fakes: a token this test minted and not expired on clk.
func goodToken(clk clock) func(string) bool {
	return func(tok string) bool {
		exp, ok := TokenExpiry(tok)
		_, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return testSecret, nil }, jwt.WithTimeFunc(clk.Now))
		return ok && err == nil && clk.Now().Before(exp)
	}
}

// The token goes as the subprotocol bearer.<jwt> (never in the URL) and with every
// snapshot GET as Authorization: Bearer; every dial takes a fresh one.
func TestTokenGoesAsSubprotocolAndBearer(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 2, `{"n":2}`)
	gw.token = goodToken(realClock{})
	m := &tokenMinter{t: t, clk: realClock{}, lifetime: time.Hour}
	h := startClient(t, gw, func(o *Options) { o.Token = m.provide })
	h.subscribe(t, "m1")
	conn := gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	gw.mu.Lock()
	protos, url, auth := gw.protocols[0], gw.dialURLs[0], gw.snapAuth[0]
	gw.mu.Unlock()
	if len(protos) != 1 || protos[0] != "bearer."+m.last() {
		t.Fatalf("offered subprotocols %v, want bearer.<the token>", protos)
	}
	if strings.Contains(url, "token") || strings.Contains(url, m.last()) {
		t.Fatalf("the token is in the URL %s", url)
	}
	if auth != "Bearer "+m.last() {
		t.Fatalf("snapshot Authorization %q", auth)
	}
	if conn.ws.Subprotocol() != "bearer."+m.last() {
		t.Fatalf("selected %q", conn.ws.Subprotocol())
	}
	first := m.last()
	conn.closeWith(1001)
	gw.waitConn(t)
	gw.publish("m1", `{"n":3}`, true)
	h.waitState(t, gw.snap("m1"))
	gw.mu.Lock()
	protos = gw.protocols[1]
	gw.mu.Unlock()
	if m.count() != 2 || protos[0] != "bearer."+m.last() || m.last() == first {
		t.Fatalf("the reconnect offered %v after %d tokens; want a fresh one", protos, m.count())
	}
}

// vipClient runs a client on gw with tokens of 2 minutes refreshed 45 s before exp,
// subscribed to m1 (live) and to vip, which the first token's claim forbids.
func vipClient(t *testing.T, gw *fakeGW) (*fakeClock, *tokenMinter, *harness, *fakeConn) {
	t.Helper()
	gw.setSnap("m1", 2, `{"n":2}`)
	gw.setSnap("vip", 7, `{"v":7}`)
	gw.refuseSub["vip"] = CodeForbidden
	clk := newFakeClock()
	gw.token = goodToken(clk)
	m := &tokenMinter{t: t, clk: clk, lifetime: 2 * time.Minute}
	h := startClientOn(t, gw, clk, func(o *Options) {
		o.Token = m.provide
		o.TokenRefreshMargin = 45 * time.Second
	})
	h.subscribe(t, "m1")
	h.subscribe(t, "vip")
	conn := gw.waitConn(t)
	conn.waitOp(t, "subscribe", "m1", "vip")
	h.waitState(t, gw.snap("m1"))
	return clk, m, h, conn
}

// A `forbidden` refusal that comes after the client sent a fresh token answers the old
// one: the subscribe is sent again at once, not left refused until the next refresh.
func TestForbiddenAfterAuthIsRetried(t *testing.T) {
	gw := newFakeGW(t)
	gw.holdRefusals = true
	clk, _, h, conn := vipClient(t, gw)
	gw.mu.Lock()
	delete(gw.refuseSub, "vip") // the new token allows it
	gw.mu.Unlock()
	clk.nextTimer(t).fire()
	if op := conn.nextOp(t); op.Op != "auth" {
		t.Fatalf("after the refresh timer: %+v, want auth", op)
	}
	// The refusal of the first subscribe arrives now, after the auth.
	conn.waitOp(t, "subscribe", "vip")
	h.waitState(t, gw.snap("vip"))
}

// Before the token expires the client asks for a fresh one and sends it with `auth` on
// the live connection, TokenRefreshMargin before exp; the subscriptions the old claim
// forbade are tried again.
func TestTokenRefreshedBeforeExpiryWithAuth(t *testing.T) {
	gw := newFakeGW(t)
	clk, m, h, conn := vipClient(t, gw)
	tm := clk.nextTimer(t)
	if tm.d != 2*time.Minute-45*time.Second {
		t.Fatalf("refresh armed in %v, want exp - margin = 75s", tm.d)
	}
	gw.mu.Lock()
	delete(gw.refuseSub, "vip") // the new token allows it
	gw.mu.Unlock()
	tm.fire()
	op := conn.nextOp(t)
	if op.Op != "auth" || op.Token != m.last() || m.count() != 2 {
		t.Fatalf("after the refresh timer: %+v (%d tokens), want auth with the fresh token", op, m.count())
	}
	if !goodToken(clk)(op.Token) {
		t.Fatal("the fresh token is not valid")
	}
	conn.waitOp(t, "subscribe", "vip")
	h.waitState(t, gw.snap("vip"))
	// The next refresh is armed from the new token's exp (a second later, see tokenMinter).
	if tm := clk.nextTimer(t); tm.d != 2*time.Minute+time.Second-45*time.Second {
		t.Fatalf("second refresh armed in %v", tm.d)
	}
	if gw.dials() != 1 {
		t.Fatalf("%d dials: the refresh must not reconnect", gw.dials())
	}
	// Snapshots now go with the new token.
	gw.mu.Lock()
	lastAuth := gw.snapAuth[len(gw.snapAuth)-1]
	gw.mu.Unlock()
	if lastAuth != "Bearer "+m.last() {
		t.Fatalf("snapshot after the refresh with %q", lastAuth)
	}
}

// A refresh that fails (the provider errs, or returns no newer token) is retried with
// backoff, and no `auth` goes out meanwhile.
func TestFailedTokenRefreshIsRetried(t *testing.T) {
	gw := newFakeGW(t)
	clk := newFakeClock()
	m := &tokenMinter{t: t, clk: clk, lifetime: time.Minute}
	same := mint(t, clk.Now().Add(time.Minute))
	var calls atomic.Int32
	h := startClientOn(t, gw, clk, func(o *Options) {
		o.Token = func(ctx context.Context) (string, error) {
			switch calls.Add(1) {
			case 1, 2:
				return same, nil // the dial, then a refresh returning the same token
			case 3:
				return "", errors.New("identity provider down")
			}
			return m.provide(ctx)
		}
		o.Rand = func() float64 { return 0 }
	})
	conn := gw.waitConn(t)
	h.waitStatus(t, Live)
	clk.nextTimer(t).fire() // refresh 1: not newer
	if tm := clk.nextTimer(t); tm.d != minTokenRefresh {
		t.Fatalf("retry after a token that is not newer armed in %v, want %v", tm.d, minTokenRefresh)
	} else {
		tm.fire() // refresh 2: the provider fails
	}
	clk.nextTimer(t).fire() // refresh 3: a good one
	op := conn.nextOp(t)
	if op.Op != "auth" || op.Token != m.last() || calls.Load() != 4 {
		t.Fatalf("first op %+v after %d provider calls, want auth with the good token after 4", op, calls.Load())
	}
}

// `error` token_expired, then close 4001: the client reconnects with a fresh token.
func TestTokenExpiredReconnectsWithAFreshToken(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	m := &tokenMinter{t: t, clk: realClock{}, lifetime: time.Hour}
	gw.token = goodToken(realClock{})
	h := startClient(t, gw, func(o *Options) { o.Token = m.provide })
	errs := make(chan *ServerError, 4)
	h.c.OnError(func(e *ServerError) { errs <- e })
	h.subscribe(t, "m1")
	conn := gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	conn.send(`{"type":"error","code":"token_expired","message":"token expired"}`)
	conn.closeWith(4001)
	if e := waitError(t, errs); e.Code != CodeTokenExpired {
		t.Fatalf("error %+v", e)
	}
	gw.waitConn(t)
	gw.publish("m1", `{"n":2}`, true)
	h.waitState(t, gw.snap("m1"))
	gw.mu.Lock()
	protos := gw.protocols[1]
	gw.mu.Unlock()
	if m.count() != 2 || protos[0] != "bearer."+m.last() {
		t.Fatalf("reconnected offering %v after %d tokens", protos, m.count())
	}
}

// A provider that fails before a dial is a failed attempt: backoff, the cause reported,
// and no dial without a token.
func TestTokenProviderFailureIsAFailedAttempt(t *testing.T) {
	gw := newFakeGW(t)
	m := &tokenMinter{t: t, clk: realClock{}, lifetime: time.Hour}
	m.fail.Store(true)
	h := startClient(t, gw, func(o *Options) { o.Token = m.provide })
	for _, want := range []time.Duration{10, 10, 20} {
		s := h.waitStatus(t, Reconnecting)
		if s.In != want*time.Millisecond || s.Err == nil || !strings.Contains(s.Err.Error(), "identity provider down") {
			t.Fatalf("status %+v, want reconnecting in %v ms with the provider's error", s, want)
		}
	}
	if gw.dials() != 0 {
		t.Fatalf("%d dials without a token", gw.dials())
	}
	m.fail.Store(false)
	gw.waitConn(t)
	h.waitStatus(t, Live)
}

// An `auth` answered `unauthorized`: the gateway kept the old token, so the refresh is
// tried again with backoff, from the old token's expiry.
func TestAuthRefusedIsRetried(t *testing.T) {
	gw := newFakeGW(t)
	clk := newFakeClock()
	m := &tokenMinter{t: t, clk: clk, lifetime: time.Minute}
	h := startClientOn(t, gw, clk, func(o *Options) {
		o.Token = m.provide
		o.Rand = func() float64 { return 0 }
	})
	conn := gw.waitConn(t)
	h.waitStatus(t, Live)
	clk.nextTimer(t).fire()
	if op := conn.nextOp(t); op.Op != "auth" {
		t.Fatalf("op %+v, want auth", op)
	}
	clk.nextTimer(t) // the next refresh, optimistically from the new token
	conn.send(`{"type":"error","code":"unauthorized","message":"token refused"}`)
	tm := clk.nextTimer(t)
	if tm.d != minTokenRefresh {
		t.Fatalf("retry after unauthorized armed in %v, want %v", tm.d, minTokenRefresh)
	}
	tm.fire()
	if op := conn.nextOp(t); op.Op != "auth" || op.Token != m.last() || m.count() != 3 {
		t.Fatalf("op %+v after %d tokens, want a second auth with the third token", op, m.count())
	}
}
