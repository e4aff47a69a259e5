package server

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"crease/bus"
)

// httpHandler serves the HTTP listener's paths of PROTOCOL.md.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		switch {
		case s.draining.Load() || s.stopping.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
		case !s.opts.Bus.Ready():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("bus not ready\n"))
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/matches", s.serveMatches)
	mux.HandleFunc("GET /v1/matches/{id}", s.serveSnapshot)
	mux.HandleFunc("GET /config.json", s.serveConfig)
	if s.opts.PublishAPI != nil {
		// The writes under /v1/matches/ (PUT, POST, PATCH); the GETs above are more
		// specific and stay the gateway's.
		mux.Handle("/v1/matches/", s.opts.PublishAPI)
	}
	if s.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if s.opts.Page != nil {
		mux.Handle("/", s.gz.gzipFiles(s.opts.Page))
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("crease gateway: see /v1/matches\n"))
		})
	}
	return s.cors(mux)
}

func (s *Server) serveMatches(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.httpToken(w, r)
	if !ok {
		return
	}
	list, err := s.opts.Bus.Matches(r.Context())
	if err != nil {
		if ok, held := s.storeWarn.allow(time.Now()); ok {
			s.log.Warn("listing matches", "err", err, "held_back", held)
		}
		http.Error(w, "snapshot store unavailable", http.StatusServiceUnavailable)
		return
	}
	if claims != nil {
		list = slices.DeleteFunc(list, func(m bus.MatchInfo) bool { return !claims.allows(m.Match) })
	}
	if list == nil {
		list = []bus.MatchInfo{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", s.cacheControl())
	_ = json.NewEncoder(w).Encode(list)
}

func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !bus.ValidMatchID(id) {
		http.Error(w, "bad match id: 1 to 64 characters of A-Z a-z 0-9 _ -", http.StatusBadRequest)
		return
	}
	claims, ok := s.httpToken(w, r)
	if !ok {
		return
	}
	if claims != nil && !claims.allows(id) {
		// Before the store is asked: a token outside the claim learns nothing, not even
		// whether the match exists.
		http.Error(w, "the token does not allow match "+id, http.StatusForbidden)
		return
	}
	snap, err := s.opts.Bus.Snapshot(r.Context(), id)
	if errors.Is(err, bus.ErrUnknownMatch) {
		http.Error(w, "unknown match", http.StatusNotFound)
		return
	}
	if err != nil {
		// The store is unreachable, or behind what this gateway delivered (it catches up
		// with the publisher's next delta): worth a retry soon (clients add their jitter).
		if ok, held := s.storeWarn.allow(time.Now()); ok {
			s.log.Warn("reading snapshot", "match", id, "err", err, "held_back", held)
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, "snapshot store unavailable", http.StatusServiceUnavailable)
		return
	}
	etag := snapshotETag(snap)
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", s.cacheControl())
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 && ifNoneMatch(strings.Join(inm, ","), etag) {
		h.Add("Vary", "Accept-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	s.gz.writeBody(w, r, "snap:"+id, etag, snap.Raw)
}

// snapshotETag is `"EPOCH.SEQ"` (PROTOCOL.md): it names the position, so a client can
// revalidate, and it changes with a new epoch even when the seq is the same. A snapshot
// without epoch is only ever one of a store written before epochs existed, until its
// publisher's next delta (which carries one: bus.Parse) rewrites it: `"SEQ"` then.
func snapshotETag(snap bus.Snapshot) string {
	if snap.Epoch == "" {
		return `"` + strconv.FormatUint(snap.Seq, 10) + `"`
	}
	return `"` + snap.Epoch + "." + strconv.FormatUint(snap.Seq, 10) + `"`
}

// cacheControl is the snapshots' and the list's Cache-Control: always revalidated, and
// kept out of shared caches when a token decides what the answer holds.
func (s *Server) cacheControl() string {
	if len(s.opts.JWTSecret) > 0 {
		return "private, no-cache"
	}
	return "no-cache"
}

// httpToken applies --jwt-secret to an HTTP API request: the token comes as
// Authorization: Bearer, or in ?token= (for pages that have it in their URL). Another
// Authorization scheme (a proxy's Basic, which browsers attach by themselves) is not
// ours and is ignored. It returns the claims (nil: no token needed) and false after
// answering 401 itself.
func (s *Server) httpToken(w http.ResponseWriter, r *http.Request) (*tokenClaims, bool) {
	if len(s.opts.JWTSecret) == 0 {
		return nil, true
	}
	tok := r.URL.Query().Get("token")
	for _, a := range r.Header.Values("Authorization") {
		if t, ok := bearerToken(a); ok {
			tok = t
			break
		}
	}
	if tok == "" {
		s.unauthorized(w, "missing token: send Authorization: Bearer JWT or ?token=JWT", "")
		return nil, false
	}
	claims, err := s.parseToken(tok)
	if err != nil {
		s.unauthorized(w, "bad token: "+err.Error(), err.Error())
		return nil, false
	}
	return claims, true
}

// unauthorized answers 401 with the Bearer challenge (RFC 6750 3).
func (s *Server) unauthorized(w http.ResponseWriter, msg, reason string) {
	ch := wwwAuthenticate(reason)
	w.Header().Set(ch[0], ch[1])
	http.Error(w, msg, http.StatusUnauthorized)
}

// serveConfig tells the page where the WebSocket listener is: same host as the page,
// the WebSocket port.
func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	_, port, _ := net.SplitHostPort(s.ln.Addr().String())
	scheme := "ws"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "wss"
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + DefaultWSPath
	if s.opts.PublicWSURL != "" {
		url = s.opts.PublicWSURL
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_ = json.NewEncoder(w).Encode(map[string]string{"ws": url})
}
