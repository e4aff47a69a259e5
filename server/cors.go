package server

import (
	"net/http"
	"strings"
)

// CORS on the HTTP listener (PROTOCOL.md "Origins and tokens"): --allowed-origins
// governs it as it governs WebSocket handshakes. Without a list any origin may read
// (Access-Control-Allow-Origin: *); with one, a listed origin gets itself echoed and
// any other none, so that its page cannot read the answers. Preflight requests
// (OPTIONS with Access-Control-Request-Method) are answered here, for every path, since
// a page sending Authorization or If-None-Match triggers one before each such request.

const (
	corsMethods = "GET, HEAD, POST, PUT, PATCH"
	// corsHeaders are the request headers a page may send: the token, the snapshot's
	// validator, and what the publish API reads.
	corsHeaders = "Authorization, If-None-Match, If-Match, Content-Type, Idempotency-Key"
	// corsExpose are the answer headers a page may read besides the simple ones.
	corsExpose = "ETag, Retry-After, WWW-Authenticate"
	corsMaxAge = "600"
)

// cors wraps the listener's handler.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		allowed := origin != "" && s.corsOrigin(h, origin)
		if r.Method != http.MethodOptions {
			if allowed {
				h.Set("Access-Control-Expose-Headers", corsExpose)
			}
			next.ServeHTTP(w, r)
			return
		}
		// OPTIONS, preflight or not, is answered here: nothing behind takes it.
		h.Set("Allow", s.allow(r.URL.Path))
		if origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// corsOrigin sets Access-Control-Allow-Origin for origin if it is allowed, and Vary:
// Origin whenever the answer depends on it.
func (s *Server) corsOrigin(h http.Header, origin string) bool {
	if len(s.opts.AllowedOrigins) == 0 {
		h.Set("Access-Control-Allow-Origin", "*")
		return true
	}
	h.Add("Vary", "Origin")
	if !s.originAllowed(origin) {
		return false
	}
	// A listed "*" still echoes: the answer is the same, and a page that sends
	// credentials needs its own origin back.
	h.Set("Access-Control-Allow-Origin", strings.TrimSpace(origin))
	return true
}

// allow is the Allow header of an OPTIONS answer: the gateway's paths take GET, and a
// publish API that says what its paths take (publish.API.Allow) adds its methods; a
// snapshot's path takes both.
func (s *Server) allow(path string) string {
	a, ok := s.opts.PublishAPI.(interface{ Allow(path string) string })
	if !ok {
		return "GET, HEAD, OPTIONS"
	}
	m := a.Allow(path)
	switch {
	case m == "":
		return "GET, HEAD, OPTIONS"
	case !strings.Contains(strings.TrimPrefix(path, "/v1/matches/"), "/"):
		return "GET, HEAD, " + m
	}
	return m
}
