package publish

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes    = 256 << 10
	DefaultPublishTimeout  = 3 * time.Second
	DefaultRetryAfter      = 2 * time.Second
	DefaultIdempotencyKeys = 10000
	DefaultIdempotencyTTL  = 24 * time.Hour
)

// Errors of New.
var (
	ErrNoBus  = errors.New("publish: Options.Bus is required")
	ErrNoKeys = errors.New("publish: at least one API key is required, none of them empty")
	ErrBadOpt = errors.New("publish: sizes and durations in Options must not be negative")
)

// Store is what the API needs of a bus: to publish, and to read a match back to resume
// it. Both the embedded bus and the Redis bus are one.
type Store interface {
	bus.Publisher
	bus.Resumer
}

// Options configures an API. Zero fields take the defaults.
type Options struct {
	// Bus is where matches are stored and published. Required.
	Bus Store
	// Keys are the API keys; each request needs `Authorization: Bearer KEY` with one.
	Keys []string
	// MaxBodyBytes caps a request body (413 beyond): DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// PublishTimeout bounds one store write (and the read of a match to resume it); a
	// write that takes longer is answered 503: DefaultPublishTimeout.
	PublishTimeout time.Duration
	// RetryAfter is the Retry-After of a 503: DefaultRetryAfter.
	RetryAfter time.Duration
	// IdempotencyKeys and IdempotencyTTL bound the remembered Idempotency-Key answers:
	// DefaultIdempotencyKeys, DefaultIdempotencyTTL.
	IdempotencyKeys int
	IdempotencyTTL  time.Duration
	// Registerer receives crease_api_requests_total; nil exports none.
	Registerer prometheus.Registerer
	// Logger; nil is slog.Default().
	Logger *slog.Logger
	// Now is the clock of the frames' ts and of the idempotency cache; nil is time.Now.
	Now func() time.Time
}

// API is the publish API, an http.Handler. Create it with New.
type API struct {
	opts     Options
	log      *slog.Logger
	keys     [][]byte
	mux      *http.ServeMux
	idem     *idemCache
	requests *prometheus.CounterVec

	mu      sync.Mutex
	matches map[string]*match
}

// New validates opts and returns the API.
func New(opts Options) (*API, error) {
	if opts.Bus == nil {
		return nil, ErrNoBus
	}
	if len(opts.Keys) == 0 {
		return nil, ErrNoKeys
	}
	a := &API{matches: map[string]*match{}}
	for _, k := range opts.Keys {
		if k == "" {
			return nil, ErrNoKeys
		}
		a.keys = append(a.keys, []byte(k))
	}
	if opts.MaxBodyBytes < 0 || opts.PublishTimeout < 0 || opts.RetryAfter < 0 || opts.IdempotencyKeys < 0 || opts.IdempotencyTTL < 0 {
		return nil, ErrBadOpt
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.PublishTimeout == 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.IdempotencyKeys == 0 {
		opts.IdempotencyKeys = DefaultIdempotencyKeys
	}
	if opts.IdempotencyTTL == 0 {
		opts.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a.opts = opts
	a.log = opts.Logger.With("component", "publish")
	a.idem = newIdemCache(opts.IdempotencyKeys, opts.IdempotencyTTL, opts.Now)
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crease_api_requests_total", Help: "Publish API requests by endpoint and status code.",
	}, []string{"endpoint", "code"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(a.requests); err != nil {
			return nil, fmt.Errorf("publish: registering metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/matches/{id}", a.write("match", a.putMatch))
	mux.HandleFunc("POST /v1/matches/{id}/deliveries", a.write("deliveries", a.postBall))
	mux.HandleFunc("PUT /v1/matches/{id}/state", a.write("state", a.putState))
	mux.HandleFunc("PATCH /v1/matches/{id}/state", a.write("state", a.patchState))
	mux.HandleFunc("POST /v1/matches/{id}/events", a.write("events", a.postEvent))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			unauthorized(w)
			return
		}
		if allow := a.Allow(r.URL.Path); allow != "" {
			w.Header().Set("Allow", allow)
			problem(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s %s: this path takes %s", r.Method, r.URL.Path, allow))
			return
		}
		problem(w, http.StatusNotFound, "not_found", "no such publish endpoint: "+r.Method+" "+r.URL.Path)
	})
	a.mux = mux
	return a, nil
}

// Allow is the Allow header of a path of the API ("" for a path it does not serve), for
// its 405 answers and the gateway's OPTIONS, which adds the GET of the snapshot.
func (a *API) Allow(path string) string {
	rest, ok := strings.CutPrefix(path, "/v1/matches/")
	if !ok || rest == "" {
		return ""
	}
	id, sub, _ := strings.Cut(rest, "/")
	if !bus.ValidMatchID(id) {
		return ""
	}
	switch sub {
	case "":
		return "PUT, OPTIONS"
	case "state":
		return "PUT, PATCH, OPTIONS"
	case "deliveries", "events":
		return "POST, OPTIONS"
	}
	return ""
}

// badUTF8At is the offset of the first byte of b that is not valid UTF-8.
func badUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// authorized compares the bearer token with every key in constant time.
func (a *API) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	tok = strings.TrimSpace(tok)
	match := 0
	for _, k := range a.keys {
		match |= subtle.ConstantTimeCompare([]byte(tok), k)
	}
	return match == 1
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="crease publish"`)
	problem(w, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer KEY with a valid API key is required")
}

// request is one decoded write, handed to an endpoint's function.
type request struct {
	id      string
	body    []byte
	prio    string // ?prio= (or the body's, for deliveries)
	ifMatch string
	r       *http.Request
	header  http.Header // the answer's, for headers a refusal carries (Accept-Patch)
}

// answer is what an endpoint function returns: a status and a JSON body.
type answer struct {
	status int
	body   any
}

// httpError is a refusal, rendered as application/problem+json.
type httpError struct {
	status     int
	code       string
	detail     string
	retryAfter bool
}

func (e *httpError) Error() string { return e.detail }

func refuse(status int, code, format string, a ...any) *httpError {
	return &httpError{status: status, code: code, detail: fmt.Sprintf(format, a...)}
}

// write wraps an endpoint: auth, body cap, match id, prio, Idempotency-Key.
func (a *API) write(endpoint string, f func(*request, *match) (answer, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() { a.requests.WithLabelValues(endpoint, strconv.Itoa(rec.status)).Inc() }()
		w = rec
		if !a.authorized(r) {
			unauthorized(w)
			return
		}
		id := r.PathValue("id")
		if !bus.ValidMatchID(id) {
			problem(w, http.StatusBadRequest, "bad_match_id", fmt.Sprintf("match id %q is not 1 to 64 characters of A-Z a-z 0-9 _ -", id))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				problem(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is over the %d-byte limit", a.opts.MaxBodyBytes))
				return
			}
			problem(w, http.StatusBadRequest, "bad_body", "reading the body: "+err.Error())
			return
		}
		if !utf8.Valid(body) {
			problem(w, http.StatusBadRequest, "bad_body", fmt.Sprintf("the body is not valid UTF-8 (first bad byte at offset %d): frames go out as WebSocket text, which must be UTF-8", badUTF8At(body)))
			return
		}
		req := &request{id: id, body: body, prio: r.URL.Query().Get("prio"), ifMatch: r.Header.Get("If-Match"), r: r, header: w.Header()}
		switch req.prio {
		case "", "high", "normal":
		default:
			problem(w, http.StatusBadRequest, "bad_prio", fmt.Sprintf("prio %q is not high or normal", req.prio))
			return
		}
		// One write of a match at a time, the idempotency check included, so that two
		// concurrent retries of one request publish once.
		m := a.match(id)
		m.mu.Lock()
		defer func() {
			known := m.known || m.uncertain
			m.mu.Unlock()
			a.release(m, known)
		}()
		key := r.Header.Get("Idempotency-Key")
		if len(key) > 255 {
			problem(w, http.StatusBadRequest, "bad_idempotency_key", "Idempotency-Key is over 255 characters")
			return
		}
		var fp string
		if key != "" {
			fp = fingerprint(r.Method, r.URL.RequestURI(), body)
			if hit, ok := a.idem.get(id, key); ok {
				if hit.fingerprint != fp {
					problem(w, http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used for a different request")
					return
				}
				w.Header().Set("Idempotent-Replayed", "true")
				writeJSON(w, hit.status, hit.body)
				return
			}
		}
		ans, err := f(req, m)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) {
				he = &httpError{status: http.StatusInternalServerError, code: "internal", detail: err.Error()}
				a.log.Error("publish API", "match", id, "err", err)
			}
			if he.retryAfter {
				w.Header().Set("Retry-After", strconv.Itoa(int((a.opts.RetryAfter+time.Second-1)/time.Second)))
			}
			problem(w, he.status, he.code, he.detail)
			return
		}
		b, _ := json.Marshal(ans.body)
		if key != "" {
			a.idem.put(id, key, idemEntry{fingerprint: fp, status: ans.status, body: b})
		}
		writeJSON(w, ans.status, b)
	}
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// problem writes an RFC 9457 problem; code is a stable machine-readable extension.
func problem(w http.ResponseWriter, status int, code, detail string) {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}{"about:blank", http.StatusText(status), status, detail, code})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Matches is how many matches the API holds in memory.
func (a *API) Matches() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.matches)
}
