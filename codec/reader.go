package codec

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// EventKind says what a consumed frame completed.
type EventKind uint8

// The events Reader.Next reports.
const (
	EventNone   EventKind = iota // a frame was consumed but completed nothing (a non-final fragment)
	EventText                    // a complete text message, valid UTF-8
	EventBinary                  // a complete binary message
	EventPing                    // a ping; the caller answers PongFrame(Payload)
	EventPong                    // a pong
	EventClose                   // a close frame; Code and Payload (the reason) are set
)

// String returns the kind's name, for logs and tests.
func (k EventKind) String() string {
	switch k {
	case EventNone:
		return "none"
	case EventText:
		return "text"
	case EventBinary:
		return "binary"
	case EventPing:
		return "ping"
	case EventPong:
		return "pong"
	case EventClose:
		return "close"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is what one consumed frame completed.
//
// Payload is unmasked. For an unfragmented message, a ping, a pong or a close it is a
// sub-slice of the bytes given to Next, valid until the caller Discards them; for a
// message assembled from fragments it is a buffer the Reader no longer references, so the
// caller may keep it.
type Event struct {
	Kind    EventKind
	Payload []byte // the message, the ping or pong payload, or the close reason
	Code    uint16 // for EventClose: the status code the client sent, 1005 if none
}

// Close status codes of RFC 6455 (7.4.1) that crease sends or checks; the gateway's own
// (4000 and up) are crease/wire's.
const (
	CloseNormal        uint16 = 1000
	CloseGoingAway     uint16 = 1001
	CloseProtocolError uint16 = 1002
	CloseNoStatus      uint16 = 1005 // reported for a close frame without a code; never sent
	CloseInvalidData   uint16 = 1007
	ClosePolicy        uint16 = 1008
	CloseTooBig        uint16 = 1009
	CloseRestart       uint16 = 1012
)

// CloseError is a protocol violation by the client. The caller sends
// CloseFrame(Code, Reason) (or e.Frame()) and closes the connection.
type CloseError struct {
	Code   uint16
	Reason string
}

// Error implements error.
func (e *CloseError) Error() string {
	return "codec: close " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

// Frame returns the close frame that answers e.
func (e *CloseError) Frame() []byte { return CloseFrame(e.Code, e.Reason) }

func protocolError(reason string) *CloseError {
	return &CloseError{Code: CloseProtocolError, Reason: reason}
}

// maxControlPayload is RFC 6455 5.5's limit on a control frame's payload.
const maxControlPayload = 125

// Reader parses client frames. Its zero value is ready. It holds state only while a
// fragmented message is being assembled. After Next returns an error the stream cannot
// be resynchronised: close the connection and drop the Reader.
//
// A Reader is one pointer: it lives in every connection's state, and only the rare
// connection in the middle of a fragmented message pays for the assembly buffer.
type Reader struct {
	m *fragmented // the open fragmented message; nil when none
}

type fragmented struct {
	op    ws.OpCode // opcode of the message (text or binary)
	buf   []byte    // payload assembled so far
	valid int       // length of buf's prefix known to be complete, valid UTF-8 (text only)
}

// Fragmented reports whether a fragmented message is being assembled.
func (r *Reader) Fragmented() bool { return r.m != nil }

// Next parses at most one frame from b (the unconsumed bytes) and returns n, the bytes
// consumed, which the caller Discards. n == 0 && err == nil: more bytes are needed. A
// consumed frame that completes nothing (a non-final fragment) returns n > 0 and
// ev.Kind == EventNone. err is a *CloseError for a protocol violation; it is decided from
// the frame header alone whenever possible, so a header claiming a huge payload is
// refused before any of the payload arrives.
//
// Next unmasks the payload of a complete frame in place in b.
func (r *Reader) Next(b []byte) (ev Event, n int, err error) {
	if len(b) == 0 {
		return ev, 0, nil
	}
	b0 := b[0]
	fin := b0&0x80 != 0
	op := ws.OpCode(b0 & 0x0f)
	if b0&0x70 != 0 {
		return r.fail(protocolError("reserved bits set without an extension"))
	}
	if op.IsReserved() {
		return r.fail(protocolError("reserved opcode " + strconv.Itoa(int(op))))
	}
	if op.IsControl() && !fin {
		return r.fail(protocolError("fragmented control frame"))
	}
	if op == ws.OpContinuation && r.m == nil {
		return r.fail(protocolError("continuation frame without a message to continue"))
	}
	if op.IsData() && op != ws.OpContinuation && r.m != nil {
		return r.fail(protocolError("new message while a fragmented message is open"))
	}
	if len(b) < 2 {
		return ev, 0, nil
	}
	b1 := b[1]
	if b1&0x80 == 0 {
		return r.fail(protocolError("client frame not masked"))
	}
	length := uint64(b1 & 0x7f)
	hdr := 2
	switch length {
	case 126:
		if len(b) < 4 {
			return ev, 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:4]))
		hdr = 4
	case 127:
		if len(b) < 10 {
			return ev, 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:10])
		hdr = 10
		if length>>63 != 0 {
			return r.fail(protocolError("payload length with the most significant bit set"))
		}
	}
	if op.IsControl() {
		if length > maxControlPayload {
			return r.fail(protocolError("control frame payload over 125 bytes"))
		}
		if op == ws.OpClose && length == 1 {
			return r.fail(protocolError("close frame with a 1-byte payload"))
		}
	} else if length > uint64(MaxClientPayload-r.assembled()) {
		// r.assembled() <= MaxClientPayload always, so the subtraction cannot wrap.
		return r.fail(&CloseError{Code: CloseTooBig, Reason: "message over " + strconv.Itoa(MaxClientPayload) + " bytes"})
	}
	hdr += 4                   // the mask
	total := hdr + int(length) // length <= MaxClientPayload here: no overflow
	if len(b) < total {
		return ev, 0, nil
	}
	mask := [4]byte(b[hdr-4 : hdr])
	p := b[hdr:total]
	ws.Cipher(p, mask, 0)

	switch op {
	case ws.OpPing:
		return Event{Kind: EventPing, Payload: p}, total, nil
	case ws.OpPong:
		return Event{Kind: EventPong, Payload: p}, total, nil
	case ws.OpClose:
		if len(p) == 0 {
			return Event{Kind: EventClose, Code: CloseNoStatus}, total, nil
		}
		code := binary.BigEndian.Uint16(p)
		if !ValidCloseCode(code) {
			return r.fail(protocolError("invalid close code " + strconv.Itoa(int(code))))
		}
		reason := p[2:]
		if !utf8.Valid(reason) {
			return r.fail(&CloseError{Code: CloseInvalidData, Reason: "close reason is not valid UTF-8"})
		}
		return Event{Kind: EventClose, Code: code, Payload: reason}, total, nil
	case ws.OpText, ws.OpBinary:
		kind := EventText
		if op == ws.OpBinary {
			kind = EventBinary
		}
		if fin {
			if kind == EventText && !utf8.Valid(p) {
				return r.fail(&CloseError{Code: CloseInvalidData, Reason: "text message is not valid UTF-8"})
			}
			return Event{Kind: kind, Payload: p}, total, nil
		}
		r.m = &fragmented{op: op, buf: append(make([]byte, 0, max(len(p), 256)), p...)}
	default: // continuation; the checks above guarantee r.m != nil
		r.m.buf = append(r.m.buf, p...)
	}
	m := r.m
	if m.op == ws.OpText {
		v, ok := validUTF8Prefix(m.buf, m.valid)
		if !ok || fin && v != len(m.buf) {
			return r.fail(&CloseError{Code: CloseInvalidData, Reason: "text message is not valid UTF-8"})
		}
		m.valid = v
	}
	if !fin {
		return Event{}, total, nil
	}
	kind := EventText
	if m.op == ws.OpBinary {
		kind = EventBinary
	}
	ev = Event{Kind: kind, Payload: m.buf}
	r.reset()
	return ev, total, nil
}

// assembled is the payload length of the open fragmented message.
func (r *Reader) assembled() int {
	if r.m == nil {
		return 0
	}
	return len(r.m.buf)
}

// Reset drops a partly assembled message and its buffer.
func (r *Reader) reset() {
	r.m = nil
}

func (r *Reader) fail(e *CloseError) (Event, int, error) {
	r.reset()
	return Event{}, 0, e
}

// validUTF8Prefix checks p from from on, which must be the start of a rune, and returns
// the length of the prefix made of complete valid runes. ok is false when p holds a
// sequence that no continuation can make valid, so a bad text message fails at the
// fragment that breaks it rather than at its end.
func validUTF8Prefix(p []byte, from int) (n int, ok bool) {
	i := from
	for i < len(p) {
		if p[i] < utf8.RuneSelf {
			i++
			continue
		}
		if !utf8.FullRune(p[i:]) {
			// An incomplete but so far valid sequence at the end: the next fragment may
			// complete it.
			return i, true
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			return i, false
		}
		i += size
	}
	return i, true
}

// ValidCloseCode reports whether a client may send code in a close frame (RFC 6455
// 7.4.1 and the IANA registry): 1000-1003, 1007-1014, and 3000-4999. 1004-1006 and
// 1015 are reserved, the rest of 1000-2999 is unassigned, below 1000 is unused.
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
