package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"crease/codec"
	"crease/shard"
	"crease/wire"
)

// checkHandshake is the Upgrader's Check: drain, origin and token. It runs on a loop.
// A verified token is handed on in r.Auth (a *tokenClaims).
func (s *Server) checkHandshake(r *codec.Request) error {
	if s.draining.Load() || s.stopping.Load() {
		return codec.Refuse(503, "gateway draining; reconnect elsewhere", [2]string{"Retry-After", retryAfter()})
	}
	if len(s.opts.AllowedOrigins) > 0 && r.Origin != "" && !s.originAllowed(r.Origin) {
		return codec.Refuse(403, "origin not allowed")
	}
	if len(s.opts.JWTSecret) == 0 {
		return nil
	}
	// Browsers cannot set headers on a WebSocket: the token comes as the subprotocol
	// "bearer.<jwt>" (kept out of URLs and access logs), which must then be echoed, or
	// in ?token=.
	tok, proto := "", ""
	for _, p := range r.Protocols {
		if t, ok := strings.CutPrefix(p, bearerProtocolPrefix); ok && t != "" {
			tok, proto = t, p
			break
		}
	}
	if tok == "" {
		tok = r.Token
	}
	if tok == "" {
		return codec.Refuse(401, "missing token: send ?token=JWT or the subprotocol bearer.JWT", wwwAuthenticate(""))
	}
	claims, err := s.parseToken(tok)
	if err != nil {
		return codec.Refuse(401, "bad token: "+err.Error(), wwwAuthenticate(err.Error()))
	}
	r.Selected = proto
	r.Token = tok
	r.Auth = claims
	return nil
}

// bearerProtocolPrefix starts the subprotocol that carries a token.
const bearerProtocolPrefix = "bearer."

// wwwAuthenticate is the challenge of a 401 (RFC 6750 3): without a reason the request
// had no token, with one the token was refused.
func wwwAuthenticate(reason string) [2]string {
	v := `Bearer realm="crease"`
	if reason != "" {
		clean := strings.Map(func(r rune) rune {
			if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
				return ' '
			}
			return r
		}, reason)
		v += `, error="invalid_token", error_description="` + clean + `"`
	}
	return [2]string{"WWW-Authenticate", v}
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
// matches the token allows (absent: any match; empty: none).
type tokenClaims struct {
	Matches []string `json:"matches,omitempty"`
	jwt.RegisteredClaims
}

// UnmarshalJSON refuses a time claim (exp, nbf, iat) that is not a JSON number: RFC
// 7519's NumericDate is one, and golang-jwt would also take "1796295755", a string.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	var times struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &times); err != nil {
		return err
	}
	for _, t := range [...]struct {
		name string
		raw  json.RawMessage
	}{{"exp", times.Exp}, {"nbf", times.Nbf}, {"iat", times.Iat}} {
		// null is the claim's absence, as golang-jwt reads it.
		if len(t.raw) > 0 && t.raw[0] != '-' && (t.raw[0] < '0' || t.raw[0] > '9') && string(t.raw) != "null" {
			return fmt.Errorf("claim %s is not a number", t.name)
		}
	}
	type plain tokenClaims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// allows reports whether the token allows match.
func (c *tokenClaims) allows(match string) bool {
	return c.Matches == nil || slices.Contains(c.Matches, match)
}

var (
	errNoExpiry = errors.New("token has no exp claim")
	errExpired  = errors.New("token is expired")
)

// tokenLeeway absorbs clock skew between the token's issuer and the gateway for nbf
// and iat. exp is exact: a token is never accepted at or after its exp, so that the
// handshake and the expiry of a live connection (4001) agree.
const tokenLeeway = 5 * time.Second

// parseToken verifies an HS256 token against the secret and the connection clock.
func (s *Server) parseToken(tok string) (*tokenClaims, error) {
	var c tokenClaims
	now := s.opts.Shard.Now
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return s.opts.JWTSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(now))
	if err != nil {
		if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
			return nil, errNoExpiry
		}
		if errors.Is(err, jwt.ErrTokenExpired) {
			return nil, errExpired
		}
		return nil, err
	}
	if !now().Before(c.ExpiresAt.Time) {
		return nil, errExpired
	}
	return &c, nil
}

// handleAuth is the `auth` op: a valid token replaces the connection's, and each
// subscription outside its claim ends with `error` forbidden; a refused token changes
// nothing (the current one stays until it expires) and is answered `unauthorized`. A
// gateway without --jwt-secret needs no token and ignores the op.
func (s *Server) handleAuth(sh *shard.Shard, c *shard.Conn, tok string) {
	if len(s.opts.JWTSecret) == 0 {
		return
	}
	claims, err := s.parseToken(tok)
	if err != nil {
		s.sendError(sh, c, wire.CodeUnauthorized, "", "token refused ("+err.Error()+"); the current token stays until it expires")
		return
	}
	c.SetToken(claims.Matches, claims.ExpiresAt.Time)
	for _, m := range c.Matches() {
		if !claims.allows(m) {
			sh.Unsubscribe(c, m)
			s.sendError(sh, c, wire.CodeForbidden, m, "the new token does not allow match "+m+"; unsubscribed")
		}
	}
}

// tokenExpired is the shard's TokenExpired hook: the `error` before the 4001 close.
func (s *Server) tokenExpired(c *shard.Conn) {
	s.sendError(s.shardFor(c.Net().EventLoop()), c, wire.CodeTokenExpired, "", "the token expired; reconnect with a new one")
}
