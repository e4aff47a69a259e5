package server

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"crease/bus"
	"crease/shard"
	"crease/wire"
)

// Each refusal says what is wrong in the client's terms (`{"op":1}` was once
// answered "not a JSON object").
func TestParseOpMessages(t *testing.T) {
	for _, tc := range []struct{ in, code, message, match string }{
		{`{"op":1}`, "bad_request", `"op" must be a string, not a number`, ""},
		{`{"op":null,"match":"m1"}`, "bad_request", `"op" must be a string, not null`, ""},
		{`{"op":["subscribe"]}`, "bad_request", `"op" must be a string, not an array`, ""},
		{`{"op":""}`, "bad_request", `"op" must not be empty`, ""},
		{`{"match":"m1"}`, "bad_request", `missing "op"`, ""},
		{`{"OP":"subscribe","match":"m1"}`, "bad_request", `missing "op"`, ""},
		{`[{"op":"subscribe"}]`, "bad_request", "message must be a JSON object, not an array", ""},
		{`"subscribe"`, "bad_request", "message must be a JSON object, not a string", ""},
		{` 42 `, "bad_request", "message must be a JSON object, not a number", ""},
		{`null`, "bad_request", "message must be a JSON object, not null", ""},
		{`{"op":"subscribe","match":"m1"`, "bad_request", "message is not valid JSON", ""},
		{`subscribe m1`, "bad_request", "message is not valid JSON", ""},
		{`{"op":"subscribe"}`, "bad_request", `missing "match"`, ""},
		{`{"op":"subscribe","match":7}`, "bad_request", `"match" must be a string, not a number`, ""},
		{`{"op":"unsubscribe","match":{"id":"m1"}}`, "bad_request", `"match" must be a string, not an object`, ""},
		{`{"op":"subscribe","match":"bad id!"}`, "bad_request", `"match" must be 1 to 64 characters of A-Z a-z 0-9 _ -`, ""},
		{`{"op":"auth"}`, "bad_request", `missing "token"`, ""},
		{`{"op":"auth","token":true}`, "bad_request", `"token" must be a string, not a boolean`, ""},
		{`{"op":"auth","token":""}`, "bad_request", `"token" must not be empty`, ""},
		{`{"op":"dance","match":"m1"}`, "unknown_op", `unknown op "dance"; the ops are subscribe, unsubscribe and auth`, ""},
		{`{"op":"subscribe","match":"m1","since":41}`, "bad_request", `"since" must be {"epoch":"...","seq":N}, the position held, not a number`, "m1"},
		{`{"op":"subscribe","match":"m1","since":{"seq":41}}`, "bad_request", `"since": missing "epoch"`, "m1"},
		{`{"op":"subscribe","match":"m1","since":{"epoch":"k3 x","seq":41}}`, "bad_request", `"since" epoch must be 1 to 32 characters of A-Z a-z 0-9 _ -`, "m1"},
		{`{"op":"subscribe","match":"m1","since":{"epoch":"k3x9","seq":-1}}`, "bad_request", `"since" seq must be a whole number from 0`, "m1"},
		{`{"op":"subscribe","match":"bad id!","since":41}`, "bad_request", `"match" must be 1 to 64 characters of A-Z a-z 0-9 _ -`, ""},
	} {
		op, code, message := parseOp([]byte(tc.in))
		// A refusal keeps only the match, when the message named a valid one: the
		// `error` then names it (a subscribe with a malformed since once came back
		// without its match).
		if string(code) != tc.code || message != tc.message || op != (clientOp{Match: tc.match}) {
			t.Errorf("%s: %q %q %+v, want %q %q match %q", tc.in, code, message, op, tc.code, tc.message, tc.match)
		}
	}
	for _, tc := range []struct {
		in   string
		want clientOp
	}{
		{`{"op":"subscribe","match":"m1"}`, clientOp{Op: "subscribe", Match: "m1"}},
		{` {"match":"m-1_x","op":"unsubscribe","extra":[1]} `, clientOp{Op: "unsubscribe", Match: "m-1_x"}},
		{`{"op":"subscribe","match":"m1","since":{"epoch":"k3x9","seq":41}}`, clientOp{Op: "subscribe", Match: "m1", Since: shard.Since{Epoch: "k3x9", Seq: 41}, HasSince: true}},
		{`{"op":"subscribe","match":"m1","since":null}`, clientOp{Op: "subscribe", Match: "m1"}},
		{`{"op":"unsubscribe","match":"m1","since":"ignored"}`, clientOp{Op: "unsubscribe", Match: "m1"}},
		{`{"op":"auth","token":"a.b.c"}`, clientOp{Op: "auth", Token: "a.b.c"}},
	} {
		if op, code, message := parseOp([]byte(tc.in)); op != tc.want || code != "" {
			t.Errorf("%s: %+v %q %q, want %+v", tc.in, op, code, message, tc.want)
		}
	}
}

// FuzzClientOp fuzzes the decoding of client messages (parseOp): it never panics, it
// accepts exactly subscribe and unsubscribe with a valid match id and auth with a
// token, every refusal has a PROTOCOL.md code and names at most a valid match, and the
// `error` frame it turns into is valid JSON.
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
		`{"op":1}`, `{"op":"auth","token":"a.b.c"}`, `{"op":"auth"}`, `{"op":"auth","token":""}`,
		`{"op":"auth","token":7}`, `{"op":"subscribe","match":"m1","since":{"epoch":"e","seq":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		op, code, message := parseOp(payload)
		switch code {
		case "":
			switch op.Op {
			case "subscribe", "unsubscribe":
				if !bus.ValidMatchID(op.Match) || op.Token != "" || (op.HasSince && (op.Op != "subscribe" || !bus.ValidEpoch(op.Since.Epoch))) {
					t.Fatalf("accepted %+v", op)
				}
			case "auth":
				if op.Token == "" || op.Match != "" {
					t.Fatalf("accepted %+v", op)
				}
			default:
				t.Fatalf("accepted op %q", op.Op)
			}
			if message != "" {
				t.Fatalf("accepted with message %q", message)
			}
			// What was accepted survives a round trip.
			m := map[string]any{"op": op.Op}
			if op.Match != "" {
				m["match"] = op.Match
			}
			if op.Token != "" {
				m["token"] = op.Token
			}
			if op.HasSince {
				m["since"] = map[string]any{"epoch": op.Since.Epoch, "seq": op.Since.Seq}
			}
			again, _ := json.Marshal(m)
			if op2, code2, _ := parseOp(again); op2 != op || code2 != "" {
				t.Fatalf("round trip of %s: %+v %q", again, op2, code2)
			}
		case "bad_request", "unknown_op":
			if op != (clientOp{Match: op.Match}) || (op.Match != "" && (code != "bad_request" || !bus.ValidMatchID(op.Match))) {
				t.Fatalf("refused %q but returned %+v", code, op)
			}
			if message == "" || len(message) > 512 || !utf8.ValidString(message) {
				t.Fatalf("message %q", message)
			}
			frame := wire.Error(code, "m1", message)
			var e struct{ Type, Code, Match, Message string }
			if err := json.Unmarshal(frame, &e); err != nil || e.Type != "error" || e.Code != string(code) || e.Match != "m1" || e.Message != message {
				t.Fatalf("error frame %s: %v %+v", frame, err, e)
			}
		default:
			t.Fatalf("code %q is not in PROTOCOL.md", code)
		}
	})
}
