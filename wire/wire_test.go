package wire_test

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"crease/bus"
	"crease/codec"
	"crease/wire"
)

// The exact text of each message: clients parse JSON, but a byte-for-byte golden keeps
// an accidental change of the contract visible in review.
func TestEncodersExactText(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{string(wire.Hello("gw-1", 20*time.Second)), `{"type":"hello","node":"gw-1","heartbeat_s":20}`},
		{string(wire.Subscribed("m123")), `{"type":"subscribed","match":"m123"}`},
		{string(wire.Error(wire.CodeForbidden, "m1", "the token does not allow match m1")),
			`{"type":"error","code":"forbidden","match":"m1","message":"the token does not allow match m1"}`},
		{string(wire.Error(wire.CodeBadRequest, "", `"op" must be a string, not a number`)),
			`{"type":"error","code":"bad_request","message":"\"op\" must be a string, not a number"}`},
		{string(wire.Resync("m1", bus.ReasonSlow)), `{"type":"resync","match":"m1","reason":"slow"}`},
		{string(wire.Reconnect(1500*time.Millisecond + 999*time.Microsecond)), `{"type":"reconnect","after_ms":1500}`},
		{string(wire.Viewers("m1", 1764322000123456, 42)),
			`{"type":"event","match":"m1","prio":"low","ts":1764322000123456,"kind":"viewers","viewers":42}`},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
}

// The viewers event is an event like any publisher's: the gateway's own bus parser
// accepts it.
func TestViewersIsABusEvent(t *testing.T) {
	m, err := bus.Parse(wire.Viewers("m1", 1, 7))
	if err != nil || m.Kind != bus.KindEvent || m.Match != "m1" || m.Prio != bus.PrioLow || m.TS != 1 {
		t.Fatalf("%+v %v", m, err)
	}
}

// Every string field is JSON-escaped, whatever it holds: a message quoting a client's
// bytes, or a node name, can never make the frame invalid JSON.
func FuzzEncodersAreJSON(f *testing.F) {
	f.Add("m1", "gw-1", "plain words")
	f.Add("\a\v\x00\x1f", "\"quoted\"\\", "line\nbreak\ttab\r")
	f.Add("\xff\xfe", "é\u2028\U0001F3CF", "\xe2\x28\xa1 broken")
	f.Fuzz(func(t *testing.T, match, node, message string) {
		want := func(s string) string { // what encoding/json makes of s
			b, _ := json.Marshal(s)
			var back string
			_ = json.Unmarshal(b, &back)
			return back
		}
		var e struct{ Type, Code, Match, Message, Node, Reason string }
		check := func(b []byte) {
			t.Helper()
			e = struct{ Type, Code, Match, Message, Node, Reason string }{}
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%q: %v", b, err)
			}
		}
		check(wire.Error(wire.CodeBadRequest, match, message))
		if e.Type != "error" || e.Code != "bad_request" || e.Match != want(match) || e.Message != want(message) {
			t.Fatalf("error: %+v", e)
		}
		check(wire.Hello(node, time.Second))
		if e.Type != "hello" || e.Node != want(node) {
			t.Fatalf("hello: %+v", e)
		}
		check(wire.Subscribed(match))
		if e.Type != "subscribed" || e.Match != want(match) {
			t.Fatalf("subscribed: %+v", e)
		}
		check(wire.Resync(match, bus.ResyncReason(message)))
		if e.Type != "resync" || e.Match != want(match) || e.Reason != want(message) {
			t.Fatalf("resync: %+v", e)
		}
		check(wire.Viewers(match, 1, 2))
	})
}

// The RFC 6455 codes wire sends are the ones codec parses, and every violation the
// codec reports maps to the reason whose close carries its code.
func TestCloseCodesAgreeWithCodec(t *testing.T) {
	for _, tc := range []struct{ wire, codec uint16 }{
		{wire.CloseNormal, codec.CloseNormal}, {wire.CloseGoingAway, codec.CloseGoingAway},
		{wire.CloseProtocol, codec.CloseProtocolError}, {wire.CloseInvalidData, codec.CloseInvalidData},
		{wire.ClosePolicy, codec.ClosePolicy}, {wire.CloseTooBig, codec.CloseTooBig},
		{wire.CloseRestart, codec.CloseRestart},
	} {
		if tc.wire != tc.codec {
			t.Errorf("wire %d, codec %d", tc.wire, tc.codec)
		}
	}
	for _, code := range []uint16{codec.CloseProtocolError, codec.CloseInvalidData, codec.CloseTooBig} {
		if got := wire.ReasonForCode(code).Code(); got != code {
			t.Errorf("a violation closed %d is answered %d", code, got)
		}
	}
}

// protocol returns the project's PROTOCOL.md.
func protocol(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the lines of PROTOCOL.md from the heading to the next heading.
func section(t *testing.T, doc, heading string) []string {
	t.Helper()
	var out []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(doc))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			if in {
				break
			}
			in = strings.TrimLeft(line, "# ") == heading
			continue
		}
		if in {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		t.Fatalf("PROTOCOL.md has no section %q", heading)
	}
	return out
}

// The close reasons are PROTOCOL.md's table "Closing", row by row: code and label, and
// the reasons without a close frame are those it names after the table.
func TestCloseReasonsMirrorProtocol(t *testing.T) {
	lines := section(t, protocol(t), "Closing")
	row := regexp.MustCompile("^\\| (\\d{4}) \\| `([a-z_0-9]+)` \\|")
	documented := map[string]uint16{}
	for _, l := range lines {
		if m := row.FindStringSubmatch(l); m != nil {
			code, _ := strconv.Atoi(m[1])
			documented[m[2]] = uint16(code)
		}
	}
	text := strings.Join(lines, "\n")
	got := map[string]uint16{}
	for _, r := range wire.CloseReasons() {
		if r.Code() == 0 {
			if !strings.Contains(text, "`"+r.String()+"`") {
				t.Errorf("reason %s (no close frame) is not named in PROTOCOL.md", r)
			}
			continue
		}
		got[r.String()] = r.Code()
	}
	if len(documented) == 0 || !mapsEqual(got, documented) {
		t.Fatalf("close reasons %v, PROTOCOL.md's table %v", got, documented)
	}
}

// The error codes are PROTOCOL.md's table "Refusals", all of them and no other.
func TestErrorCodesMirrorProtocol(t *testing.T) {
	row := regexp.MustCompile("^\\| `([a-z_]+)` \\|")
	var documented []string
	header := true // the table's first row names its columns
	for _, l := range section(t, protocol(t), "Refusals") {
		if m := row.FindStringSubmatch(l); m != nil && !header {
			documented = append(documented, m[1])
		} else if m != nil {
			header = false
		}
	}
	var got []string
	for _, c := range wire.ErrorCodes() {
		got = append(got, string(c))
	}
	slices.Sort(got)
	slices.Sort(documented)
	if len(documented) == 0 || !slices.Equal(got, documented) {
		t.Fatalf("error codes %v, PROTOCOL.md's table %v", got, documented)
	}
}

func mapsEqual(a, b map[string]uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
