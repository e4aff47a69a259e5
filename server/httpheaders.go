package server

import (
	"strings"
)

// Parsers of the HTTP request fields the HTTP listener reads. They are pure, for
// FuzzHTTPHeaders, and follow RFC 9110's list syntax: comma-separated elements, empty
// ones allowed, optional whitespace around each.

// listElements calls fn for each non-empty element of an RFC 9110 list value, trimmed;
// fn returns false to stop.
func listElements(v string, fn func(string) bool) {
	for e := range strings.SplitSeq(v, ",") {
		if e = strings.Trim(e, " \t"); e != "" && !fn(e) {
			return
		}
	}
}

// acceptsGzip reports whether an Accept-Encoding value (RFC 9110 12.5.3) accepts gzip:
// "gzip" or "x-gzip" with a non-zero qvalue, or "*" with one when gzip is not listed
// with q=0. An element with a malformed qvalue is ignored.
func acceptsGzip(accept string) bool {
	gzip, star := -1, -1 // -1 not listed, 0 refused, 1 accepted
	listElements(accept, func(e string) bool {
		coding, params, _ := strings.Cut(e, ";")
		coding = strings.ToLower(strings.Trim(coding, " \t"))
		q, ok := qvalue(params)
		if !ok {
			return true
		}
		v := 0
		if q {
			v = 1
		}
		switch coding {
		case "gzip", "x-gzip":
			if gzip != 0 { // a refusal anywhere wins
				gzip = v
			}
		case "*":
			if star != 0 {
				star = v
			}
		}
		return true
	})
	if gzip >= 0 {
		return gzip == 1
	}
	return star == 1
}

// qvalue reads the parameters after a coding (";q=0.5") and reports whether its weight
// is non-zero (no q means 1), and whether the parameters are well-formed.
func qvalue(params string) (nonZero, ok bool) {
	nonZero = true
	for p := range strings.SplitSeq(params, ";") {
		p = strings.Trim(p, " \t")
		if p == "" {
			continue
		}
		k, v, found := strings.Cut(p, "=")
		if !found {
			return false, false
		}
		if !strings.EqualFold(strings.Trim(k, " \t"), "q") {
			continue
		}
		v = strings.Trim(v, " \t")
		// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
		if len(v) == 0 || len(v) > 5 || (v[0] != '0' && v[0] != '1') || (len(v) > 1 && v[1] != '.') {
			return false, false
		}
		zero := v[0] == '0'
		for _, c := range v[min(2, len(v)):] {
			if c < '0' || c > '9' || (v[0] == '1' && c != '0') {
				return false, false
			}
			if c != '0' {
				zero = false
			}
		}
		nonZero = !zero
	}
	return nonZero, true
}

// ifNoneMatch reports whether an If-None-Match value (RFC 9110 13.1.2) matches a
// current entity tag etag (quoted, strong): "*" matches any current representation;
// otherwise a listed tag matches by weak comparison (W/"2" matches "2").
func ifNoneMatch(header, etag string) bool {
	hit := false
	listElements(header, func(e string) bool {
		if e == "*" || strings.TrimPrefix(e, "W/") == etag {
			hit = true
		}
		return !hit
	})
	return hit
}

// bearerToken reads a token from an Authorization value (RFC 6750 2.1: the scheme in
// any case, one or more spaces, the token). ok is false for another scheme or an empty
// token.
func bearerToken(authorization string) (token string, ok bool) {
	scheme, rest, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.Trim(rest, " ")
	return token, token != "" && !strings.ContainsAny(token, " \t")
}
