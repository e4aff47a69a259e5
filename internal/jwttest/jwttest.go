// Package jwttest mints the HS256 tokens that tests of crease's JWT auth present.
package jwttest

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Mint signs an HS256 token for sub with secret, expiring at exp; matches, when not
// nil, becomes its matches claim (an empty, non-nil list allows no match).
func Mint(t testing.TB, secret []byte, sub string, exp time.Time, matches ...string) string {
	t.Helper()
	return MintUnix(t, secret, sub, exp.Unix(), matches)
}

// MintUnix is Mint with exp in Unix seconds, for tokens whose exp must differ by less
// than a second.
func MintUnix(t testing.TB, secret []byte, sub string, exp int64, matches []string) string {
	t.Helper()
	claims := jwt.MapClaims{"exp": exp, "sub": sub}
	if matches != nil {
		claims["matches"] = matches
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
