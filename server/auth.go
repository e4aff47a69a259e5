package server

import (
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"crease/codec"
)

// checkHandshake is the Upgrader's Check: drain, origin and token. It runs on a loop.
func (s *Server) checkHandshake(r *codec.Request) error {
	if s.draining.Load() || s.stopping.Load() {
		return codec.Refuse(503, "gateway draining; reconnect elsewhere", [2]string{"Retry-After", retryAfter()})
	}
	if len(s.opts.AllowedOrigins) > 0 && r.Origin != "" && !s.originAllowed(r.Origin) {
		return codec.Refuse(403, "origin not allowed")
	}
	if len(s.opts.JWTSecret) > 0 {
		tok := r.Token
		if tok == "" {
			// Browsers cannot set headers on a WebSocket; a token may come as a
			// subprotocol "bearer.<jwt>"... or as the only offered protocol.
			for _, p := range r.Protocols {
				if t, ok := strings.CutPrefix(p, "bearer."); ok {
					tok = t
					r.Selected = p
					break
				}
			}
		}
		if tok == "" {
			return codec.Refuse(401, "missing token")
		}
		claims, err := s.parseToken(tok)
		if err != nil {
			return codec.Refuse(401, "bad token: "+err.Error())
		}
		if claims.Matches != nil {
			for _, m := range r.Matches {
				if !contains(claims.Matches, m) {
					return codec.Refuse(401, "token does not allow match "+m)
				}
			}
		}
		r.Token = tok
	}
	return nil
}

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.opts.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	// Also accept a listed bare host ("example.com") for any scheme and port-less form.
	if u, err := url.Parse(origin); err == nil {
		for _, o := range s.opts.AllowedOrigins {
			if strings.EqualFold(o, u.Host) || strings.EqualFold(o, u.Hostname()) {
				return true
			}
		}
	}
	return false
}

// tokenClaims are the claims crease reads: the standard expiry and an optional list of
// matches the token allows.
type tokenClaims struct {
	Matches []string `json:"matches,omitempty"`
	jwt.RegisteredClaims
}

var errNoExpiry = errors.New("token has no exp claim")

func (s *Server) parseToken(tok string) (*tokenClaims, error) {
	var c tokenClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return s.opts.JWTSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	if err != nil {
		if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
			return nil, errNoExpiry
		}
		return nil, err
	}
	return &c, nil
}

// tokenMatches returns the matches the handshake's token allows (nil, false: any).
// The token was checked by checkHandshake an instant before, but this second parse can
// still fail (the token expired in between): then no match is allowed, never any.
func (s *Server) tokenMatches(r codec.Request) ([]string, bool) {
	if len(s.opts.JWTSecret) == 0 || r.Token == "" {
		return nil, false
	}
	c, err := s.parseToken(r.Token)
	if err != nil {
		return []string{}, true
	}
	if c.Matches == nil {
		return nil, false
	}
	return c.Matches, true
}
