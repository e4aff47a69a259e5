package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame encodes a masked client frame with gobwas's writer, an encoder independent
// of the Reader under test.
func clientFrame(t testing.TB, fin bool, op ws.OpCode, payload []byte) []byte {
	t.Helper()
	f := ws.MaskFrameWith(ws.NewFrame(op, fin, bytes.Clone(payload)), testMask)
	var buf bytes.Buffer
	if err := ws.WriteFrame(&buf, f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawHeader builds a frame header by hand, for what no encoder will produce.
func rawHeader(b0 byte, masked bool, length uint64) []byte {
	var mb byte
	if masked {
		mb = 0x80
	}
	var h []byte
	switch {
	case length <= 125:
		h = []byte{b0, mb | byte(length)}
	case length <= 0xffff:
		h = binary.BigEndian.AppendUint16([]byte{b0, mb | 126}, uint16(length))
	default:
		h = binary.BigEndian.AppendUint64([]byte{b0, mb | 127}, length)
	}
	if masked {
		h = append(h, testMask[:]...)
	}
	return h
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// result is what a stream of frames produced, comparable between feeding strategies.
type result struct {
	events   []string
	errCode  uint16
	consumed int
}

func (r result) equal(o result) bool {
	return r.errCode == o.errCode && r.consumed == o.consumed && slices.Equal(r.events, o.events)
}

func (r result) String() string {
	return fmt.Sprintf("events %q err %d consumed %d", r.events, r.errCode, r.consumed)
}

// eventString identifies an event for comparison; fuzzing compares many large payloads,
// so it is not quoted.
func eventString(ev Event) string {
	return ev.Kind.String() + "/" + strconv.Itoa(int(ev.Code)) + "/" + string(ev.Payload)
}

// checkByteByByte fails t unless data, fed one byte at a time, reads as whole.
func checkByteByByte(t testing.TB, data []byte, whole result) {
	t.Helper()
	cuts := make([]int, len(data))
	for i := range cuts {
		cuts[i] = i
	}
	if got := feed(t, bytes.Clone(data), cuts...); !got.equal(whole) {
		t.Fatalf("byte by byte: %v\nwhole: %v", got, whole)
	}
}

// feed runs a fresh Reader over data delivered in the given chunks, the way gnet delivers
// bytes: the unconsumed rest stays and the next chunk is appended to it. It checks the
// invariants every Next must keep.
func feed(t testing.TB, data []byte, cuts ...int) result {
	var r Reader
	var res result
	var buf []byte
	prev := 0
	for _, c := range append(cuts, len(data)) {
		buf = append(buf, data[prev:c]...)
		prev = c
		for {
			ev, n, err := r.Next(buf)
			if n < 0 || n > len(buf) {
				t.Fatalf("n = %d of %d", n, len(buf))
			}
			if err != nil {
				ce, ok := err.(*CloseError)
				if !ok || n != 0 {
					t.Fatalf("err %v (%T) with n %d", err, err, n)
				}
				if ce.Code != CloseProtocolError && ce.Code != CloseInvalidData && ce.Code != CloseTooBig {
					t.Fatalf("unexpected close code %d", ce.Code)
				}
				res.errCode = ce.Code
				return res
			}
			if n == 0 {
				break
			}
			checkEvent(t, ev)
			if ev.Kind != EventNone {
				res.events = append(res.events, eventString(ev))
			}
			res.consumed += n
			buf = buf[n:]
		}
	}
	return res
}

func checkEvent(t testing.TB, ev Event) {
	switch ev.Kind {
	case EventNone:
		if ev.Payload != nil || ev.Code != 0 {
			t.Fatalf("EventNone with content: %+v", ev)
		}
	case EventText, EventBinary:
		if len(ev.Payload) > MaxClientPayload {
			t.Fatalf("message of %d bytes passed the %d cap", len(ev.Payload), MaxClientPayload)
		}
		if ev.Kind == EventText && !utf8.Valid(ev.Payload) {
			t.Fatalf("invalid UTF-8 text passed: %q", ev.Payload)
		}
	case EventPing, EventPong:
		if len(ev.Payload) > 125 {
			t.Fatalf("control payload of %d bytes", len(ev.Payload))
		}
	case EventClose:
		if ev.Code != CloseNoStatus && !ValidCloseCode(ev.Code) || len(ev.Payload) > 123 || !utf8.Valid(ev.Payload) {
			t.Fatalf("bad close event %+v", ev)
		}
	default:
		t.Fatalf("unknown kind %d", ev.Kind)
	}
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestReaderMaskedText(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 127, 1000, 200, MaxClientPayload} {
		payload := []byte(strings.Repeat("é", size/2) + strings.Repeat("x", size%2))
		frame := clientFrame(t, true, ws.OpText, payload)
		b := append(bytes.Clone(frame), 0x81) // a byte of the next frame must stay
		var r Reader
		ev, n, err := r.Next(b)
		if err != nil || n != len(frame) || ev.Kind != EventText || !bytes.Equal(ev.Payload, payload) {
			t.Fatalf("size %d: ev %s n %d err %v", size, ev.Kind, n, err)
		}
		if size > 0 && &ev.Payload[0] != &b[n-size] {
			t.Fatalf("size %d: payload was copied, want a sub-slice of the input", size)
		}
		if r.Fragmented() || r.m != nil {
			t.Fatal("reader holds state after an unfragmented message")
		}
	}
}

func TestReaderBinaryNeedNotBeUTF8(t *testing.T) {
	var r Reader
	ev, _, err := r.Next(clientFrame(t, true, ws.OpBinary, []byte{0xff, 0xfe}))
	if err != nil || ev.Kind != EventBinary || !bytes.Equal(ev.Payload, []byte{0xff, 0xfe}) {
		t.Fatalf("ev %+v err %v", ev, err)
	}
}

func TestReaderIncompleteConsumesNothing(t *testing.T) {
	frame := clientFrame(t, true, ws.OpText, bytes.Repeat([]byte("a"), 300))
	orig := bytes.Clone(frame)
	var r Reader
	for i := 0; i < len(frame); i++ {
		ev, n, err := r.Next(frame[:i])
		if n != 0 || err != nil || ev.Kind != EventNone {
			t.Fatalf("prefix %d: n %d err %v", i, n, err)
		}
	}
	if !bytes.Equal(frame, orig) {
		t.Fatal("an incomplete frame was modified (unmasked early)")
	}
}

func TestReaderErrors(t *testing.T) {
	long := bytes.Repeat([]byte("a"), 126)
	for _, tc := range []struct {
		name string
		in   []byte
		code uint16
	}{
		{"unmasked text", join(rawHeader(0x81, false, 2), []byte("hi")), 1002},
		{"unmasked close, header only", []byte{0x88, 0x00}, 1002},
		{"rsv1", join(rawHeader(0xc1, true, 0)), 1002},
		{"rsv2", join(rawHeader(0xa1, true, 0)), 1002},
		{"rsv3 decided from the first byte", []byte{0x91}, 1002},
		{"opcode 3", rawHeader(0x83, true, 0), 1002},
		{"opcode 7", rawHeader(0x87, true, 0), 1002},
		{"opcode 0xb", rawHeader(0x8b, true, 0), 1002},
		{"opcode 0xf", []byte{0x8f}, 1002},
		{"ping without fin", rawHeader(0x09, true, 0), 1002},
		{"close without fin", rawHeader(0x08, true, 0), 1002},
		{"ping of 126 bytes", join(rawHeader(0x89, true, 126), long), 1002},
		{"pong of 126 bytes, header only", rawHeader(0x8a, true, 126)[:4], 1002},
		{"length with msb set", rawHeader(0x82, true, 1<<63)[:10], 1002},
		{"4097 bytes, header only", rawHeader(0x82, true, MaxClientPayload+1)[:4], 1009},
		{"2^62 bytes, header only", rawHeader(0x81, true, 1<<62)[:10], 1009},
		{"2^63-1 bytes, header only", rawHeader(0x81, true, 1<<63-1)[:10], 1009},
		{"continuation first", clientFrame(t, true, ws.OpContinuation, []byte("x")), 1002},
		{"continuation first, one byte", []byte{0x80}, 1002},
		{"text inside a fragmented message", join(clientFrame(t, false, ws.OpText, []byte("a")), clientFrame(t, true, ws.OpText, []byte("b"))), 1002},
		{"binary inside a fragmented message", join(clientFrame(t, false, ws.OpBinary, []byte("a")), []byte{0x82}), 1002},
		{"fragments over the cap", join(clientFrame(t, false, ws.OpBinary, make([]byte, 3000)), rawHeader(0x80, true, 1097)[:4]), 1009},
		{"fragments one over the cap", join(clientFrame(t, false, ws.OpText, make([]byte, MaxClientPayload)), rawHeader(0x80, true, 1)[:2]), 1009},
		{"invalid UTF-8 text", clientFrame(t, true, ws.OpText, []byte("a\xffb")), 1007},
		{"surrogate in text", clientFrame(t, true, ws.OpText, []byte("\xed\xa0\x80")), 1007},
		{"overlong encoding", clientFrame(t, true, ws.OpText, []byte("\xc0\xaf")), 1007},
		{"text ending mid-rune", clientFrame(t, true, ws.OpText, []byte("a\xc3")), 1007},
		{"invalid UTF-8 in a first fragment, fails early", clientFrame(t, false, ws.OpText, []byte("ok\xff")), 1007},
		{"invalid UTF-8 in a later fragment", join(clientFrame(t, false, ws.OpText, []byte("ok")), clientFrame(t, false, ws.OpContinuation, []byte("\xf8"))), 1007},
		{"fragmented text ending mid-rune", join(clientFrame(t, false, ws.OpText, []byte("a")), clientFrame(t, true, ws.OpContinuation, []byte("\xe2\x82"))), 1007},
		{"close of 1 byte", clientFrame(t, true, ws.OpClose, []byte{3}), 1002},
		{"close of 1 byte, header only", rawHeader(0x88, true, 1)[:2], 1002},
		{"close with invalid UTF-8 reason", clientFrame(t, true, ws.OpClose, closePayload(1000, "\xff")), 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := feed(t, tc.in)
			if res.errCode != tc.code {
				t.Fatalf("got %v, want close %d", res, tc.code)
			}
		})
	}
}

func TestReaderCloseCodes(t *testing.T) {
	valid := map[uint16]bool{}
	for _, c := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4008, 4999} {
		valid[c] = true
	}
	for _, c := range []uint16{0, 1, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1012, 1014, 1015, 1016, 1100, 2000, 2999, 3000, 3999, 4000, 4008, 4999, 5000, 65535} {
		res := feed(t, clientFrame(t, true, ws.OpClose, closePayload(c, "bye")))
		if valid[c] {
			want := eventString(Event{Kind: EventClose, Code: c, Payload: []byte("bye")})
			if res.errCode != 0 || len(res.events) != 1 || res.events[0] != want {
				t.Errorf("code %d: %v", c, res)
			}
		} else if res.errCode != 1002 {
			t.Errorf("code %d: %v, want 1002", c, res)
		}
		if ValidCloseCode(c) != valid[c] {
			t.Errorf("ValidCloseCode(%d) = %v", c, !valid[c])
		}
	}
	// No payload: 1005 reported. Just a code: empty reason. A 123-byte reason: the most.
	res := feed(t, join(clientFrame(t, true, ws.OpClose, nil),
		clientFrame(t, true, ws.OpClose, closePayload(1000, "")),
		clientFrame(t, true, ws.OpClose, closePayload(4000, strings.Repeat("é", 61)+"x"))))
	want := []string{
		eventString(Event{Kind: EventClose, Code: 1005}),
		eventString(Event{Kind: EventClose, Code: 1000, Payload: []byte{}}),
		eventString(Event{Kind: EventClose, Code: 4000, Payload: []byte(strings.Repeat("é", 61) + "x")}),
	}
	if res.errCode != 0 || fmt.Sprint(res.events) != fmt.Sprint(want) {
		t.Fatalf("%v", res)
	}
}

func TestReaderFragmentation(t *testing.T) {
	// "héllo wörld" split inside both two-byte runes, with a ping and a pong between
	// fragments.
	msg := []byte("héllo wörld")
	i1 := bytes.IndexByte(msg, 0xc3) + 1
	i2 := bytes.LastIndexByte(msg, 0xc3) + 1
	stream := join(
		clientFrame(t, false, ws.OpText, msg[:i1]),
		clientFrame(t, true, ws.OpPing, []byte("p1")),
		clientFrame(t, false, ws.OpContinuation, msg[i1:i2]),
		clientFrame(t, false, ws.OpContinuation, nil),
		clientFrame(t, true, ws.OpPong, nil),
		clientFrame(t, true, ws.OpContinuation, msg[i2:]),
		clientFrame(t, false, ws.OpBinary, []byte{0xff}),
		clientFrame(t, true, ws.OpContinuation, []byte{0xfe}),
		clientFrame(t, false, ws.OpText, nil),
		clientFrame(t, true, ws.OpContinuation, nil),
		clientFrame(t, true, ws.OpText, []byte("after")),
	)
	want := []string{
		eventString(Event{Kind: EventPing, Payload: []byte("p1")}),
		eventString(Event{Kind: EventPong, Payload: []byte{}}),
		eventString(Event{Kind: EventText, Payload: msg}),
		eventString(Event{Kind: EventBinary, Payload: []byte{0xff, 0xfe}}),
		eventString(Event{Kind: EventText}),
		eventString(Event{Kind: EventText, Payload: []byte("after")}),
	}
	res := feed(t, stream)
	if res.errCode != 0 || fmt.Sprint(res.events) != fmt.Sprint(want) || res.consumed != len(stream) {
		t.Fatalf("%v\nwant %q", res, want)
	}
}

func TestReaderFragmentedAtTheCap(t *testing.T) {
	stream := join(
		clientFrame(t, false, ws.OpBinary, make([]byte, 3000)),
		clientFrame(t, true, ws.OpContinuation, make([]byte, MaxClientPayload-3000)),
	)
	res := feed(t, stream)
	if res.errCode != 0 || len(res.events) != 1 {
		t.Fatalf("%v", res)
	}
}

func TestReaderReleasesFragmentBuffer(t *testing.T) {
	var r Reader
	b := join(clientFrame(t, false, ws.OpText, []byte("ab")), clientFrame(t, true, ws.OpContinuation, []byte("cd")))
	_, n, err := r.Next(b)
	if err != nil || !r.Fragmented() || r.m == nil || r.m.buf == nil {
		t.Fatalf("after the first fragment: err %v fragmented %v", err, r.Fragmented())
	}
	ev, _, err := r.Next(b[n:])
	if err != nil || string(ev.Payload) != "abcd" {
		t.Fatalf("ev %+v err %v", ev, err)
	}
	if r.Fragmented() || r.m != nil {
		t.Fatalf("reader still holds a fragment buffer after the message completed")
	}
	// The assembled payload belongs to the caller now: a new message must not reuse it.
	b2 := join(clientFrame(t, false, ws.OpText, []byte("xy")), clientFrame(t, true, ws.OpContinuation, []byte("z")))
	_, n, _ = r.Next(b2)
	_, _, _ = r.Next(b2[n:])
	if string(ev.Payload) != "abcd" {
		t.Fatalf("earlier payload overwritten: %q", ev.Payload)
	}
	// An error drops an open message too.
	_, n, _ = r.Next(clientFrame(t, false, ws.OpText, []byte("ab")))
	if _, _, err := r.Next(clientFrame(t, true, ws.OpText, nil)); err == nil || r.m != nil {
		t.Fatalf("err %v, fragment state %v", err, r.m)
	}
}

// splitStream is a mix of every kind of frame, used to check that where the bytes are cut
// does not change what comes out.
func splitStream(t testing.TB) []byte {
	return join(
		clientFrame(t, true, ws.OpText, []byte(`{"op":"subscribe","match":"m123"}`)),
		clientFrame(t, false, ws.OpText, []byte("frag €")[:7]),
		clientFrame(t, true, ws.OpPing, []byte("ping")),
		clientFrame(t, true, ws.OpContinuation, []byte("frag €")[7:]),
		clientFrame(t, true, ws.OpBinary, bytes.Repeat([]byte{1, 2, 3}, 100)), // 16-bit length
		clientFrame(t, true, ws.OpPong, nil),
		clientFrame(t, true, ws.OpClose, closePayload(1000, "bye")),
	)
}

func TestReaderSplitAtEveryByte(t *testing.T) {
	for _, stream := range [][]byte{
		splitStream(t),
		join(splitStream(t)[:50], clientFrame(t, true, ws.OpText, []byte("\xff"))),
		join(clientFrame(t, false, ws.OpText, []byte("a")), rawHeader(0x80, true, 1<<40)[:10]),
	} {
		whole := feed(t, bytes.Clone(stream))
		for i := 0; i <= len(stream); i++ {
			if got := feed(t, bytes.Clone(stream), i); !got.equal(whole) {
				t.Fatalf("split at %d: %v\nwhole: %v", i, got, whole)
			}
		}
		checkByteByByte(t, stream, whole)
	}
	// And the whole of the first stream is what was sent.
	if res := feed(t, splitStream(t)); len(res.events) != 6 || res.errCode != 0 {
		t.Fatalf("%v", res)
	}
}

func TestEventKindString(t *testing.T) {
	for k, s := range map[EventKind]string{EventNone: "none", EventText: "text", EventBinary: "binary", EventPing: "ping", EventPong: "pong", EventClose: "close", 99: "EventKind(99)"} {
		if k.String() != s {
			t.Errorf("%d: %q", k, k.String())
		}
	}
}

func TestReaderNextDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	frame := clientFrame(t, true, ws.OpText, []byte(`{"op":"subscribe","match":"m123"}`))
	buf := make([]byte, len(frame))
	var r Reader
	allocs := testing.AllocsPerRun(100, func() {
		copy(buf, frame)
		if ev, _, err := r.Next(buf); err != nil || ev.Kind != EventText {
			t.Fatal(ev, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per unfragmented frame", allocs)
	}
}
