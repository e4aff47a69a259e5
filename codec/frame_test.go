package codec_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"crease/codec"
)

// readServerFrame decodes b with gobwas's reader, independently of our encoder, and
// requires that b holds exactly one frame.
func readServerFrame(t *testing.T, b []byte) ws.Frame {
	t.Helper()
	r := bytes.NewReader(b)
	f, err := ws.ReadFrame(r)
	if err != nil {
		t.Fatalf("frame does not parse: %v", err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left after the frame", r.Len())
	}
	if f.Header.Masked || !f.Header.Fin || f.Header.Rsv != 0 {
		t.Fatalf("header %+v: a server frame is unmasked, final, without rsv bits", f.Header)
	}
	return f
}

func TestTextFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 0xffff, 0x10000, 70000} {
		p := bytes.Repeat([]byte("a"), n)
		b := codec.TextFrame(p)
		if len(b) != cap(b) {
			t.Errorf("%d: len %d cap %d: the frame should be sized exactly", n, len(b), cap(b))
		}
		f := readServerFrame(t, b)
		if f.Header.OpCode != ws.OpText || !bytes.Equal(f.Payload, p) {
			t.Fatalf("%d: op %v, payload of %d bytes", n, f.Header.OpCode, len(f.Payload))
		}
		// Append form, after existing bytes.
		b2 := codec.AppendTextFrame([]byte("pre"), p)
		if !bytes.Equal(b2[3:], b) || string(b2[:3]) != "pre" {
			t.Fatalf("%d: AppendTextFrame differs from TextFrame", n)
		}
	}
}

func TestCloseFrame(t *testing.T) {
	for _, tc := range []struct {
		code   uint16
		reason string
		want   string // the reason as sent
	}{
		{1000, "", ""},
		{1009, "message too big", "message too big"},
		{4008, strings.Repeat("x", 200), strings.Repeat("x", 123)},
		{1012, strings.Repeat("é", 62), strings.Repeat("é", 61)}, // 124 bytes: cut before the rune that does not fit
	} {
		f := readServerFrame(t, codec.CloseFrame(tc.code, tc.reason))
		if f.Header.OpCode != ws.OpClose || len(f.Payload) > 125 {
			t.Fatalf("%+v", f.Header)
		}
		code, reason := ws.ParseCloseFrameData(f.Payload)
		if uint16(code) != tc.code || reason != tc.want {
			t.Errorf("code %d reason %q, want %d %q", code, reason, tc.code, tc.want)
		}
	}
	for _, code := range []uint16{0, 1005} {
		if f := readServerFrame(t, codec.CloseFrame(code, "ignored")); len(f.Payload) != 0 {
			t.Errorf("code %d: payload %q, want none", code, f.Payload)
		}
	}
	e := &codec.CloseError{Code: 1002, Reason: "bad"}
	if !bytes.Equal(e.Frame(), codec.CloseFrame(1002, "bad")) {
		t.Error("CloseError.Frame differs from CloseFrame")
	}
}

func TestPingPongFrames(t *testing.T) {
	for _, tc := range []struct {
		op    ws.OpCode
		frame func([]byte) []byte
	}{{ws.OpPing, codec.PingFrame}, {ws.OpPong, codec.PongFrame}} {
		for _, n := range []int{0, 4, 125, 126, 300} {
			p := bytes.Repeat([]byte("p"), n)
			f := readServerFrame(t, tc.frame(p))
			if f.Header.OpCode != tc.op || !bytes.Equal(f.Payload, p[:min(n, 125)]) {
				t.Errorf("%v %d: op %v len %d", tc.op, n, f.Header.OpCode, len(f.Payload))
			}
		}
	}
	if got := codec.AppendPongFrame([]byte("x"), []byte("ab")); !bytes.Equal(got, append([]byte("x"), codec.PongFrame([]byte("ab"))...)) {
		t.Errorf("AppendPongFrame %q", got)
	}
}
