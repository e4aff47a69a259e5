package wire

import (
	"strconv"
	"time"
	"unicode/utf8"

	"crease/bus"
)

// Hello is the first frame after the upgrade: which gateway, and how often it pings in
// whole seconds (a heartbeat with a sub-second remainder is announced truncated;
// shard.Options refuses one).
func Hello(node string, heartbeat time.Duration) []byte {
	b := make([]byte, 0, 48+len(node))
	b = append(b, `{"type":"hello","node":`...)
	b = appendString(b, node)
	b = append(b, `,"heartbeat_s":`...)
	b = strconv.AppendInt(b, int64(heartbeat/time.Second), 10)
	return append(b, '}')
}

// Subscribed accepts a subscription to match.
func Subscribed(match string) []byte {
	b := make([]byte, 0, 32+len(match))
	b = append(b, `{"type":"subscribed","match":`...)
	b = appendString(b, match)
	return append(b, '}')
}

// Error refuses a client request with code; match is "" when the refusal concerns no
// match, and message says in plain words what is wrong.
func Error(code ErrorCode, match, message string) []byte {
	b := make([]byte, 0, 48+len(code)+len(match)+len(message))
	b = append(b, `{"type":"error","code":`...)
	b = appendString(b, string(code))
	if match != "" {
		b = append(b, `,"match":`...)
		b = appendString(b, match)
	}
	b = append(b, `,"message":`...)
	b = appendString(b, message)
	return append(b, '}')
}

// Resync tells a connection that it missed deltas of match (or that the stream started
// a new epoch): it fetches the snapshot and goes on.
func Resync(match string, reason bus.ResyncReason) []byte {
	b := make([]byte, 0, 40+len(match)+len(reason))
	b = append(b, `{"type":"resync","match":`...)
	b = appendString(b, match)
	b = append(b, `,"reason":`...)
	b = appendString(b, string(reason))
	return append(b, '}')
}

// Reconnect asks a connection of a draining gateway to close, wait after (sent in whole
// milliseconds) and reconnect.
func Reconnect(after time.Duration) []byte {
	b := make([]byte, 0, 40)
	b = append(b, `{"type":"reconnect","after_ms":`...)
	b = strconv.AppendInt(b, after.Milliseconds(), 10)
	return append(b, '}')
}

// Viewers is the viewers event of match: n subscribers over every gateway, counted at
// ts (Unix µs). It travels the bus as any publisher's event does.
func Viewers(match string, ts, n int64) []byte {
	b := make([]byte, 0, 96+len(match))
	b = append(b, `{"type":"event","match":`...)
	b = appendString(b, match)
	b = append(b, `,"prio":"low","ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"kind":"viewers","viewers":`...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, '}')
}

// appendString appends s as a JSON string (RFC 8259 7): quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, everything else as it is. Go's
// strconv quoting is not JSON: it writes \a, \v and \x01.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
