package shard

import "time"

// A connection's token (PROTOCOL.md "Origins and tokens"): the matches its claim
// allows and its expiry. Both live in connExt, so that a gateway without tokens pays
// nothing per connection. The sweep ends a connection whose token expired
// (Hooks.TokenExpired: `error` token_expired, then 4001) within a second of its exp.

// SetToken gives c a token: it may subscribe only to allow (nil: any match; empty: none)
// and its token expires at exp (the zero time: never). It replaces an earlier token
// (the `auth` op); subscriptions outside the new claim are the caller's to end.
func (c *Conn) SetToken(allow []string, exp time.Time) {
	if c.ext == nil {
		if allow == nil && exp.IsZero() {
			return
		}
		c.ext = &connExt{}
	}
	c.ext.allow = allow
	c.ext.exp = 0
	if !exp.IsZero() {
		c.ext.exp = max(1, exp.UnixMilli())
	}
	if c.ext.empty() {
		c.ext = nil
	}
}

// expired reports whether c's token has expired at now (Unix ms).
func (c *Conn) expired(nowMS int64) bool {
	return c.ext != nil && c.ext.exp != 0 && nowMS >= c.ext.exp
}
