package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// DefaultTokenRefreshMargin is how long before a token's `exp` a fresh one is fetched
// and sent on the live connection.
const DefaultTokenRefreshMargin = 30 * time.Second

// minTokenRefresh bounds how often a connection asks for a fresh token, whatever the
// lifetime of the tokens the provider hands out.
const minTokenRefresh = time.Second

// ErrTokenNotNewer: the token provider returned a token that does not expire later than
// the one the connection holds, so an `auth` would change nothing. The refresh is tried
// again with backoff until the gateway ends the connection (4001).
var ErrTokenNotNewer = errors.New("client: the token provider returned no newer token")

// StaticToken returns a token provider that always returns tok. The gateway closes a
// connection whose token expired (4001) and refuses new ones (401): use a provider that
// mints fresh tokens for connections that outlive their token.
func StaticToken(tok string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return tok, nil }
}

// TokenExpiry returns the `exp` claim of a JWT, read without checking the signature
// (the gateway checks it; the client only needs to know when to refresh). ok is false
// for a token that is not a JWT or has no numeric `exp`.
func TokenExpiry(tok string) (exp time.Time, ok bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil || math.IsNaN(*claims.Exp) ||
		*claims.Exp <= 0 || *claims.Exp > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(*claims.Exp)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// refreshDelay is how long after now a token expiring at exp is replaced: margin before
// exp, but never later than half its remaining lifetime (a short-lived token is not
// refreshed at once), and never sooner than minTokenRefresh.
func refreshDelay(now, exp time.Time, margin time.Duration) time.Duration {
	left := exp.Sub(now)
	return max(left-min(margin, left/2), minTokenRefresh)
}

// tokenSource holds the token of the connection and asks the provider for fresh ones.
type tokenSource struct {
	provide func(context.Context) (string, error) // nil: no token
	clock   clock

	mu  sync.Mutex
	tok string
	exp time.Time // zero: not known
}

// fresh asks the provider for a token and keeps it as the current one.
func (ts *tokenSource) fresh(ctx context.Context) (string, time.Time, error) {
	if ts.provide == nil {
		return "", time.Time{}, nil
	}
	tok, err := ts.provide(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("client: token provider: %w", err)
	}
	if tok == "" {
		return "", time.Time{}, errors.New("client: token provider returned an empty token")
	}
	exp, _ := TokenExpiry(tok)
	ts.mu.Lock()
	ts.tok, ts.exp = tok, exp
	ts.mu.Unlock()
	return tok, exp, nil
}

// current returns the token held, fetching one if none is held or it has expired.
func (ts *tokenSource) current(ctx context.Context) (string, error) {
	if ts.provide == nil {
		return "", nil
	}
	ts.mu.Lock()
	tok, exp := ts.tok, ts.exp
	ts.mu.Unlock()
	if tok != "" && (exp.IsZero() || ts.clock.Now().Before(exp)) {
		return tok, nil
	}
	tok, _, err := ts.fresh(ctx)
	return tok, err
}

// held returns the token held ("" for none), never calling the provider.
func (ts *tokenSource) held() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.tok
}

// armRefresh schedules the refresh of the connection's token, if it has a known expiry.
func (l *loop) armRefresh() {
	l.stopRefresh()
	if l.c.opts.Token == nil || l.tokenExp.IsZero() {
		return
	}
	l.refresh = l.c.clock.NewTimer(refreshDelay(l.c.clock.Now(), l.tokenExp, l.c.opts.TokenRefreshMargin))
}

func (l *loop) stopRefresh() {
	if l.refresh != nil {
		l.refresh.Stop()
		l.refresh = nil
	}
}

// startRefresh asks the provider for a fresh token off Run's goroutine (it may do I/O).
func (l *loop) startRefresh() {
	ctx, out, ts := l.connCtx, l.refreshed, l.c.tokens
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fctx, cancel := context.WithTimeout(ctx, DefaultFetchTimeout)
		tok, exp, err := ts.fresh(fctx)
		cancel()
		select {
		case out <- tokenResult{tok, exp, err}:
		case <-ctx.Done():
		}
	}()
}

// refreshDone sends a fresh token with `auth`, or tries again later.
func (l *loop) refreshDone(res tokenResult) {
	err := res.err
	if err == nil && !res.exp.After(l.tokenExp) {
		err = ErrTokenNotNewer
	}
	if err != nil {
		l.refreshN++
		b := l.c.opts.Backoff
		delay := max(minTokenRefresh, l.c.jitter(b.retryWindow(l.refreshN-1)))
		l.c.opts.Logger.Warn("crease client: token refresh", "err", err, "retry_in", delay)
		l.refresh = l.c.clock.NewTimer(delay)
		return
	}
	l.refreshN = 0
	// Optimistic: the gateway answers only a refused token (`unauthorized`), and then
	// the old one still holds (authRefused).
	l.authPrevExp, l.tokenExp = l.tokenExp, res.exp
	l.send(clientOp{Op: "auth", Token: res.tok})
	l.auths++
	// The new token's claim may allow what the old one forbade.
	l.retryRefused(CodeForbidden)
	l.armRefresh()
}

// authRefused handles `unauthorized`: the gateway kept the token it had, so the refresh
// failed and is tried again with backoff.
func (l *loop) authRefused() {
	if l.authPrevExp.IsZero() {
		return // no auth of ours is outstanding
	}
	l.tokenExp, l.authPrevExp = l.authPrevExp, time.Time{}
	l.stopRefresh()
	l.refreshDone(tokenResult{err: errors.New("client: the gateway refused the fresh token (unauthorized)")})
}
