package server

import (
	"strings"
	"testing"
)

func TestAcceptsGzip(t *testing.T) {
	for in, want := range map[string]bool{
		"": false, "gzip": true, "GZIP": true, "x-gzip": true, "gzip;q=0": false, "gzip; q=0.000": false,
		"gzip;q=0.001": true, "gzip;q=1": true, "gzip;q=1.000": true, "gzip;q=1.5": false, "gzip;q=abc": false,
		"gzip;q=": false, "gzip;q=0.0001": false, "deflate, gzip": true, "br;q=1.0, gzip;q=0.8": true,
		"*": true, "*;q=0": false, "gzip;q=0, *": false, "*, gzip;q=0": false, "identity": false,
		"deflate;q=0.5, *;q=0.1": true, " , ,gzip , ": true, "gzip;level=9": true, "gzip;q=0.5;x=y": true,
		"gzip;broken": false, "gzip, gzip;q=0": false,
	} {
		if got := acceptsGzip(in); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestIfNoneMatch(t *testing.T) {
	const etag = `"e1.42"`
	for in, want := range map[string]bool{
		`*`: true, etag: true, `W/"e1.42"`: true, `"e1.41"`: false, `"e1.41", "e1.42"`: true, `"e1.41",W/"e1.42"`: true,
		`e1.42`: false, `""`: false, ``: false, ` , "e1.42" ,`: true, `"e1.420"`: false,
	} {
		if got := ifNoneMatch(in, etag); got != want {
			t.Errorf("ifNoneMatch(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc.def.ghi": "abc.def.ghi", "bearer x": "x", "BEARER   x  ": "x",
		"Basic dXNlcg==": "", "Bearer": "", "Bearer ": "", "Bearer a b": "", "Bearerx y": "", "": "",
	} {
		got, ok := bearerToken(in)
		if got != want && ok || ok != (want != "") {
			t.Errorf("bearerToken(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

// FuzzHTTPHeaders: the request field parsers never panic and keep their promises
// whatever the input: a gzip refusal anywhere wins, "*" and the current tag always
// match, an accepted bearer token reads back the same.
func FuzzHTTPHeaders(f *testing.F) {
	for _, s := range []string{"gzip", "gzip;q=0.5, *;q=0", `W/"e1.2", *`, "Bearer a.b.c", "bearer  x ", ",,;;==",
		"gzip;q=1.0001", "\t*\t;\tq=1", `"a,b"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		listElements(in, func(e string) bool {
			if e == "" || strings.Contains(e, ",") || strings.Trim(e, " \t") != e {
				t.Fatalf("element %q of %q", e, in)
			}
			return true
		})
		_ = acceptsGzip(in)
		if acceptsGzip(in + ",gzip;q=0") {
			t.Fatalf("%q then a refusal of gzip: accepted", in)
		}
		if !ifNoneMatch(in+",*", `"t"`) || !ifNoneMatch(in+`,"t"`, `"t"`) {
			t.Fatalf("%q: * or the tag itself did not match", in)
		}
		if tok, ok := bearerToken(in); ok {
			if tok == "" || strings.ContainsAny(tok, " \t") {
				t.Fatalf("bearerToken(%q) accepted %q", in, tok)
			}
			if again, ok := bearerToken("Bearer " + tok); !ok || again != tok {
				t.Fatalf("token %q does not read back: %q %v", tok, again, ok)
			}
		}
	})
}
