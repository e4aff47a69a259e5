package codec

import (
	"bytes"
	"errors"
	"net/url"
	"unsafe"
)

// The request target of a handshake ("/ws?match=m1,m2&token=..."), read the way
// url.ParseRequestURI and url.ParseQuery read it, without their allocations in the
// usual case: FuzzRequestTargetMatchesNetURL holds the two to the same answers.

// splitRequestURI returns the request target's decoded path and its raw query, as
// url.ParseRequestURI would. The usual target ("/ws?match=..." with no escapes in the
// path) is split in place, without allocating; anything else goes through net/url.
func splitRequestURI(uri []byte) (path string, rawQuery []byte, e *HTTPError) {
	p, q, _ := bytes.Cut(uri, []byte("?"))
	if len(p) > 0 && p[0] == '/' && bytes.IndexByte(p, '%') < 0 && !hasCTL(uri) {
		return unsafeString(p), q, nil
	}
	parsed, err := url.ParseRequestURI(string(uri))
	if err != nil {
		return "", nil, malformed("bad request URI")
	}
	return parsed.Path, []byte(parsed.RawQuery), nil
}

// eachQueryPair checks a query string as url.ParseQuery does (a semicolon separator or
// a bad escape in any pair is an error) and, given fn, calls it with each pair's
// unescaped key (valid only during the call) and raw value (queryValue unescapes it),
// in order, until fn returns false. It builds no map and allocates nothing for a query
// with nothing to unescape.
func eachQueryPair(query []byte, fn func(k string, raw []byte) bool) error {
	var first error
	for len(query) > 0 {
		var pair []byte
		pair, query, _ = bytes.Cut(query, []byte("&"))
		if bytes.IndexByte(pair, ';') >= 0 {
			first = cmpOr(first, errors.New("invalid semicolon separator in query"))
			continue
		}
		if len(pair) == 0 {
			continue
		}
		k, v, _ := bytes.Cut(pair, []byte("="))
		key, err := queryUnescape(k, true)
		if err == nil {
			_, err = queryUnescape(v, true)
		}
		if err != nil {
			first = cmpOr(first, err)
			continue
		}
		if fn != nil && !fn(key, v) {
			return first
		}
	}
	return first
}

// queryValue is the unescaped value of a pair that eachQueryPair has checked.
func queryValue(raw []byte) string {
	v, _ := queryUnescape(raw, false)
	return v
}

// queryUnescape is url.QueryUnescape of b. With borrow, a result with nothing to
// unescape may alias b (the caller only compares it).
func queryUnescape(b []byte, borrow bool) (string, error) {
	if bytes.IndexByte(b, '%') < 0 && bytes.IndexByte(b, '+') < 0 {
		if borrow {
			return unsafeString(b), nil
		}
		return string(b), nil
	}
	return url.QueryUnescape(string(b))
}

// hasCTL reports whether b holds an ASCII control character, which net/url refuses.
func hasCTL(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// unsafeString views b as a string for a comparison that does not outlive b.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
