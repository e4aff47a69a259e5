package server

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

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
		mux.Handle("/", s.opts.Page)
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("crease gateway: see /v1/matches\n"))
		})
	}
	return mux
}

func (s *Server) serveMatches(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Bus.Matches(r.Context())
	if err != nil {
		s.log.Warn("listing matches", "err", err)
		http.Error(w, "snapshot store unavailable", http.StatusServiceUnavailable)
		return
	}
	if list == nil {
		list = []bus.MatchInfo{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_ = json.NewEncoder(w).Encode(list)
}

func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !bus.ValidMatchID(id) {
		http.Error(w, "bad match id", http.StatusBadRequest)
		return
	}
	snap, err := s.opts.Bus.Snapshot(r.Context(), id)
	if errors.Is(err, bus.ErrUnknownMatch) {
		http.Error(w, "unknown match", http.StatusNotFound)
		return
	}
	if err != nil {
		s.log.Warn("reading snapshot", "match", id, "err", err)
		http.Error(w, "snapshot store unavailable", http.StatusServiceUnavailable)
		return
	}
	etag := `"` + strconv.FormatUint(snap.Seq, 10) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "ETag")
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(snap.Raw)))
	_, _ = w.Write(snap.Raw)
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
