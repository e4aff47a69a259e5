package codec

import (
	"net/url"
	"slices"
	"testing"
)

// FuzzRequestTargetMatchesNetURL: Upgrade splits the request target and reads its query
// without net/url (splitRequestURI, eachQueryPair); what it finds must be what
// url.ParseRequestURI and url.ParseQuery find: the same path, the same errors, the
// first token and catchup and every match value in order.
func FuzzRequestTargetMatchesNetURL(f *testing.F) {
	for _, s := range []string{
		"/ws?match=m1,m2&token=t", "/ws", "/ws?", "/w%73?match=a", "/ws?match=a%2Cb&match=&token=x&token=y",
		"/ws?match=a;b", "/ws?a=%zz&match=m", "/ws?%=1", "/ws?match=a+b&token=%41", "/ws?catchup=1&catchup=x&match=m", "http://h/ws?match=m",
		"*", "ws", "//ws?x", "/ws?&&match=m&", "/ws?match", "/ws?token", "/a b?c", "/ws?x=\x01", "/\x7f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		path, rawQuery, e := splitRequestURI([]byte(target))
		ref, rerr := url.ParseRequestURI(target)
		if (e != nil) != (rerr != nil) {
			t.Fatalf("%q: split error %v, net/url %v", target, e, rerr)
		}
		if rerr != nil {
			return
		}
		if path != ref.Path || string(rawQuery) != ref.RawQuery {
			t.Fatalf("%q: path %q query %q, net/url %q %q", target, path, rawQuery, ref.Path, ref.RawQuery)
		}
		q, qerr := url.ParseQuery(ref.RawQuery)
		if err := eachQueryPair(rawQuery, nil); (err != nil) != (qerr != nil) {
			t.Fatalf("%q: query error %v, net/url %v", target, err, qerr)
		}
		if qerr != nil {
			return
		}
		var token, catchUp string
		var tokenSeen, catchUpSeen bool
		var matches []string
		_ = eachQueryPair(rawQuery, func(k string, raw []byte) bool {
			v := queryValue(raw)
			switch k {
			case "token":
				if !tokenSeen {
					token, tokenSeen = v, true
				}
			case "catchup":
				if !catchUpSeen {
					catchUp, catchUpSeen = v, true
				}
			case "match":
				matches = append(matches, v)
			}
			return true
		})
		if token != q.Get("token") || catchUp != q.Get("catchup") || !slices.Equal(matches, q["match"]) {
			t.Fatalf("%q: token %q catchup %q matches %q, net/url %q %q %q", target, token, catchUp, matches, q.Get("token"), q.Get("catchup"), q["match"])
		}
	})
}

// TestUpgradeAllocates: a browser's handshake allocates only what its Request keeps
// (the host, origin and match strings and their slice) and gobwas's accept key; the
// garbage of every handshake is paid again in a gateway's memory after a storm.
func TestUpgradeAllocates(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	in := []byte("GET /ws?match=m123,m456&token=abc HTTP/1.1\r\nHost: scores.example:8080\r\nConnection: Upgrade\r\n" +
		"Upgrade: websocket\r\nOrigin: https://scores.example\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	u := &Upgrader{Check: func(r *Request) error { return nil }}
	out := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(200, func() {
		if _, _, req, err := u.Upgrade(in, out[:0]); err != nil || len(req.Matches) != 2 || req.Token != "abc" {
			t.Fatal(req, err)
		}
	})
	// Host, Origin, the match value, the token, the Matches slice (twice as it grows),
	// gobwas's accept key.
	if allocs > 7 {
		t.Fatalf("%v allocations per handshake, want at most 7", allocs)
	}
}
