package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"crease/bus"
	"crease/codec"
	"crease/shard"
)

// A token that no longer parses when the connection is enrolled (it expired between the
// handshake check and the enrolment) must allow no match, not every match. It used to
// fail open: tokenMatches returned (nil, false), "no restriction".
func TestTokenMatchesFailsClosed(t *testing.T) {
	secret := []byte("s")
	s := &Server{opts: Options{JWTSecret: secret}}
	sign := func(c jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expired := sign(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix(), "matches": []string{"m1"}})
	if allow, ok := s.tokenMatches(codec.Request{Token: expired}); !ok || allow == nil || len(allow) != 0 {
		t.Fatalf("expired token: allow %v ok %v, want an empty list (nothing allowed)", allow, ok)
	}
	valid := sign(jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "matches": []string{"m1"}})
	if allow, ok := s.tokenMatches(codec.Request{Token: valid}); !ok || len(allow) != 1 || allow[0] != "m1" {
		t.Fatalf("valid token: allow %v ok %v", allow, ok)
	}
	open := sign(jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})
	if allow, ok := s.tokenMatches(codec.Request{Token: open}); ok || allow != nil {
		t.Fatalf("token without matches: allow %v ok %v, want any match", allow, ok)
	}
}

// FuzzClientOp fuzzes the decoding of client messages (parseOp): it never panics, it
// accepts exactly the two ops with a valid match id, every refusal has a PROTOCOL.md
// code, and the `error` frame it turns into is valid JSON.
func FuzzClientOp(f *testing.F) {
	for _, s := range []string{
		`{"op":"subscribe","match":"m123"}`,
		`{"op":"unsubscribe","match":"m-1_x"}`,
		`{"op":"subscribe","match":"bad id!"}`,
		`{"op":"dance","match":"m1"}`,
		`{"op":"\u0000\ud800","match":"m1"}`,
		`{"match":"m1"}`,
		`{"op":"subscribe"}`,
		`{"op":"subscribe","match":7}`,
		`{"op":"subscribe","match":null}`,
		`{"OP":"subscribe","Match":"m1"}`,
		`{"op":"subscribe","match":"a","match":"b"}`,
		`[1,2]`, `null`, `"x"`, ``, `{`, `not json`,
		`{"op":"subscribe","match":"` + strings.Repeat("x", 65) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		op, match, code, message := parseOp(payload)
		switch code {
		case "":
			if op != "subscribe" && op != "unsubscribe" {
				t.Fatalf("accepted op %q", op)
			}
			if !bus.ValidMatchID(match) {
				t.Fatalf("accepted match %q", match)
			}
			if message != "" {
				t.Fatalf("accepted with message %q", message)
			}
			// What was accepted survives a round trip.
			again, _ := json.Marshal(map[string]string{"op": op, "match": match})
			if op2, match2, code2, _ := parseOp(again); op2 != op || match2 != match || code2 != "" {
				t.Fatalf("round trip of %s: %q %q %q", again, op2, match2, code2)
			}
		case "bad_request", "unknown_op":
			if op != "" || match != "" {
				t.Fatalf("refused %q but returned op %q match %q", code, op, match)
			}
			if message == "" || len(message) > 512 || !utf8.ValidString(message) {
				t.Fatalf("message %q", message)
			}
			frame := shard.ErrorJSON(code, message)
			var e struct{ Type, Code, Message string }
			if err := json.Unmarshal(frame, &e); err != nil || e.Type != "error" || e.Code != code || e.Message != message {
				t.Fatalf("error frame %s: %v %+v", frame, err, e)
			}
		default:
			t.Fatalf("code %q is not in PROTOCOL.md", code)
		}
	})
}
