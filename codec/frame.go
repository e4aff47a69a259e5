package codec

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Server frames are unfragmented and unmasked (RFC 6455 5.1: a server never masks). Each
// function returns a new slice holding header and payload, so a frame is built once and
// the same bytes are written to every subscriber.

// TextFrame returns one FIN text frame carrying payload. payload must be valid UTF-8
// (crease only sends JSON it has validated or built).
func TextFrame(payload []byte) []byte {
	return AppendTextFrame(make([]byte, 0, headerLen(len(payload))+len(payload)), payload)
}

// AppendTextFrame appends a FIN text frame carrying payload to dst.
func AppendTextFrame(dst, payload []byte) []byte {
	return appendFrame(dst, ws.OpText, payload)
}

// CloseFrame returns a close frame with code and reason. A reason that would push the
// payload over 125 bytes is cut at a rune boundary. code 0 or 1005 (no status) gives an
// empty payload.
func CloseFrame(code uint16, reason string) []byte {
	return AppendCloseFrame(make([]byte, 0, 2+maxControlPayload), code, reason)
}

// AppendCloseFrame appends the frame CloseFrame returns to dst.
func AppendCloseFrame(dst []byte, code uint16, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return appendFrame(dst, ws.OpClose, nil)
	}
	reason = cutUTF8(reason, maxControlPayload-2)
	dst = append(dst, 0x80|byte(ws.OpClose), byte(2+len(reason)))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

// PingFrame returns a ping frame; a payload over 125 bytes is cut to 125.
func PingFrame(payload []byte) []byte {
	return appendFrame(make([]byte, 0, 2+min(len(payload), maxControlPayload)), ws.OpPing, payload)
}

// PongFrame returns a pong frame; a payload over 125 bytes is cut to 125.
func PongFrame(payload []byte) []byte {
	return AppendPongFrame(make([]byte, 0, 2+min(len(payload), maxControlPayload)), payload)
}

// AppendPongFrame appends a pong frame to dst, for answering a ping without allocating
// when dst has room.
func AppendPongFrame(dst, payload []byte) []byte {
	return appendFrame(dst, ws.OpPong, payload)
}

func appendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	if op.IsControl() && len(payload) > maxControlPayload {
		payload = payload[:maxControlPayload]
	}
	n := len(payload)
	dst = append(dst, 0x80|byte(op))
	switch {
	case n <= 125:
		dst = append(dst, byte(n))
	case n <= 0xffff:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// headerLen is the size of an unmasked frame header for a payload of n bytes.
func headerLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}

// cutUTF8 shortens s to at most n bytes without splitting a rune.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
