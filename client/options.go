package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults filled in by New.
const (
	DefaultBackoffBase   = 500 * time.Millisecond // first step of the reconnect backoff
	DefaultBackoffCap    = 30 * time.Second       // the longest reconnect window
	DefaultInitialSpread = 5 * time.Second        // the smallest reconnect window (herd spreading)
	DefaultHTTPPort      = "8081"                 // the gateway's HTTP listener (PROTOCOL.md)
	DefaultHelloTimeout  = 10 * time.Second       // from the upgrade to the `hello` frame
	DefaultWriteTimeout  = 5 * time.Second        // one client message or pong
	DefaultFetchTimeout  = 10 * time.Second       // one snapshot GET
	// DefaultMaxFrameBytes bounds one server frame; bus messages are at most 64 KiB.
	DefaultMaxFrameBytes = 1 << 20
)

// Errors of New, Run and Subscribe.
var (
	ErrNoURL       = errors.New("client: Options.URL is required")
	ErrBadURL      = errors.New("client: Options.URL is not a ws:// or wss:// URL")
	ErrBadBaseHTTP = errors.New("client: Options.BaseHTTP is not an http:// or https:// URL")
	ErrBadBackoff  = errors.New("client: backoff durations must not be negative, and Base ≤ Cap")
	ErrBadMargin   = errors.New("client: TokenRefreshMargin must not be negative")
	ErrBadMatchID  = errors.New("client: bad match id")
	ErrNilCallback = errors.New("client: nil callback")
	ErrRunning     = errors.New("client: Run is already running")
)

// Backoff shapes the reconnect delays of PROTOCOL.md: attempt n waits a uniformly random
// time in [0, Window(n)), where Window(n) = min(Cap, max(InitialSpread, Base·2^n)). The
// window therefore starts as the 0 to InitialSpread spread (so a fleet cut off at once
// does not come back at once) and grows to Cap once Base·2^n passes InitialSpread. Cap
// also bounds the spread. This is the formula of web/crease-client.js (reconnectDelay).
type Backoff struct {
	Base          time.Duration
	Cap           time.Duration
	InitialSpread time.Duration
}

// Window returns the jitter window of attempt n (0 for the first reconnect).
func (b Backoff) Window(attempt int) time.Duration {
	return max(b.retryWindow(attempt), min(b.InitialSpread, b.Cap))
}

// retryWindow is the jitter window of retry n (0 for the first) of a snapshot fetch, a
// token refresh or a rate-limited subscribe: Base doubled n times, at most Cap.
func (b Backoff) retryWindow(n int) time.Duration {
	// Base·2^n ≤ Cap tested without shifting Base: a shift that overflows can wrap to
	// any value, 0 included (a retry in a tight loop).
	if n >= 0 && n < 63 && b.Base <= b.Cap>>n {
		return b.Base << n
	}
	return b.Cap
}

// Delay returns the delay of attempt n for r in [0, 1): full jitter over Window(n).
func (b Backoff) Delay(attempt int, r float64) time.Duration {
	return time.Duration(r * float64(b.Window(attempt)))
}

// Options configure a Client. Zero fields get the defaults above.
type Options struct {
	// URL of the WebSocket endpoint, such as ws://host:8080/ws. Required.
	URL string
	// BaseHTTP is the gateway's HTTP listener, such as http://host:8081; snapshots are
	// GET BaseHTTP/v1/matches/{id}. Default: URL's host on port 8081 (https for wss).
	BaseHTTP string
	// SnapshotURL, if set, overrides BaseHTTP: it returns the snapshot URL of a match.
	SnapshotURL func(match string) string
	// Backoff of reconnects and of snapshot retries.
	Backoff Backoff
	// HTTPClient fetches snapshots. Default: a client with DefaultFetchTimeout.
	HTTPClient *http.Client
	// Dialer opens WebSocket connections. Default: websocket.DefaultDialer's settings.
	Dialer *websocket.Dialer
	// Header is sent with every handshake (Origin, for example).
	Header http.Header
	// Token, if set, provides the token of a gateway started with --jwt-secret (an HS256
	// JWT). It is called before every dial, the token going as the subprotocol
	// `bearer.<jwt>` (never in the URL); again TokenRefreshMargin before the token's `exp`,
	// the fresh token then being sent on the live connection with {"op":"auth"}; and by
	// FetchSnapshot when the token held has expired. Snapshot requests carry the token
	// held as `Authorization: Bearer`. It must be safe for concurrent use; StaticToken
	// wraps a fixed token. Default: none.
	Token func(ctx context.Context) (string, error)
	// TokenRefreshMargin is how long before `exp` a token is replaced; at most half of
	// the token's remaining lifetime is waited for. Default: DefaultTokenRefreshMargin.
	TokenRefreshMargin time.Duration
	// CatchUp opts in to catch-up deltas (`?catchup=1`): a slow connection, or one
	// recovering from history, may get one delta with `from` instead of a `resync`.
	// Default: false.
	CatchUp bool
	// Rand returns a uniform number in [0, 1) for the jitter; it must be safe for
	// concurrent use. Default: math/rand/v2's Float64.
	Rand func() float64
	// Logger receives connection and fetch troubles (reconnects, refused subscriptions,
	// failed snapshot fetches and token refreshes); nil means slog.Default(), as for the
	// gateway and the bus. To discard them, pass slog.New(slog.DiscardHandler).
	Logger *slog.Logger
	// OnStatus, if set, is called on every status change, on Run's goroutine.
	OnStatus func(Status)
	// Observer, if set, sees every frame and snapshot (see Checker), on Run's goroutine.
	Observer Observer
}

// fill applies the defaults and validates o.
func (o *Options) fill() error {
	if o.URL == "" {
		return ErrNoURL
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("%w: %q", ErrBadURL, o.URL)
	}
	if o.BaseHTTP == "" {
		scheme := "http"
		if u.Scheme == "wss" {
			scheme = "https"
		}
		o.BaseHTTP = scheme + "://" + net.JoinHostPort(u.Hostname(), DefaultHTTPPort)
	}
	b, err := url.Parse(o.BaseHTTP)
	if err != nil || (b.Scheme != "http" && b.Scheme != "https") || b.Host == "" {
		return fmt.Errorf("%w: %q", ErrBadBaseHTTP, o.BaseHTTP)
	}
	if o.SnapshotURL == nil {
		base := strings.TrimRight(o.BaseHTTP, "/")
		o.SnapshotURL = func(match string) string { return base + "/v1/matches/" + url.PathEscape(match) }
	}
	if o.Backoff.Base == 0 {
		o.Backoff.Base = DefaultBackoffBase
	}
	if o.Backoff.Cap == 0 {
		o.Backoff.Cap = DefaultBackoffCap
	}
	if o.Backoff.InitialSpread == 0 {
		o.Backoff.InitialSpread = DefaultInitialSpread
	}
	if bo := o.Backoff; bo.Base < 0 || bo.Cap < 0 || bo.InitialSpread < 0 || bo.Base > bo.Cap {
		return fmt.Errorf("%w: %+v", ErrBadBackoff, bo)
	}
	if o.TokenRefreshMargin < 0 {
		return fmt.Errorf("%w: %v", ErrBadMargin, o.TokenRefreshMargin)
	}
	if o.TokenRefreshMargin == 0 {
		o.TokenRefreshMargin = DefaultTokenRefreshMargin
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: DefaultFetchTimeout}
	}
	if o.Dialer == nil {
		d := *websocket.DefaultDialer
		o.Dialer = &d
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}
