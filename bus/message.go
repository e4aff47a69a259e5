package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Kind is the type of a bus message.
type Kind uint8

// The two kinds a bus carries.
const (
	KindDelta Kind = iota + 1 // part of the state, ordered by seq
	KindEvent                 // ephemeral, may be dropped
)

// Prio is the delivery priority of a message.
type Prio uint8

// Priorities, from most to least important. Low is only ever an event.
const (
	PrioHigh Prio = iota + 1
	PrioNormal
	PrioLow
)

// String returns the wire name of p, which is also its metric label.
func (p Prio) String() string {
	switch p {
	case PrioHigh:
		return "high"
	case PrioNormal:
		return "normal"
	case PrioLow:
		return "low"
	}
	return "unknown"
}

// MaxMessageBytes bounds one bus message. Real deltas are a few hundred bytes; a larger
// message is garbage or abuse and is dropped.
const MaxMessageBytes = 64 << 10

// Message is a validated bus message. Data is the verbatim JSON text, forwarded as is.
type Message struct {
	Kind  Kind
	Match string
	Epoch string // the delta's epoch (ValidEpoch); "" for events
	Seq   uint64 // 0 for events
	Prio  Prio
	TS    int64 // publish time, Unix microseconds
	Data  []byte
}

// ErrInvalidMessage wraps every reason Parse refuses a message.
var ErrInvalidMessage = errors.New("bus: invalid message")

type wireHeader struct {
	Type  string          `json:"type"`
	Match string          `json:"match"`
	Epoch *string         `json:"epoch"`
	Seq   *uint64         `json:"seq"`
	Prio  string          `json:"prio"`
	TS    *int64          `json:"ts"`
	Patch json.RawMessage `json:"patch"`
	Kind  json.RawMessage `json:"kind"` // an event's; read only for events
	From  bool            // the frame has a `from` member (a catch-up delta's)
}

// decodeHeader reads the header fields under their exact keys, the last of duplicates
// winning: the way every client (JSON.parse, a Go map) reads the frame the gateway
// forwards verbatim. Decoding straight into wireHeader would not do: encoding/json
// matches struct fields case-insensitively, so {"match":"a","Match":"b"} would be routed
// to the subscribers of b while each of them reads match a (FuzzParse found it).
func decodeHeader(data []byte) (wireHeader, error) {
	var h wireHeader
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return h, err
	}
	for _, f := range [...]struct {
		key string
		dst any
	}{{"type", &h.Type}, {"match", &h.Match}, {"epoch", &h.Epoch}, {"seq", &h.Seq}, {"prio", &h.Prio}, {"ts", &h.TS}} {
		if raw, ok := top[f.key]; ok {
			if err := json.Unmarshal(raw, f.dst); err != nil {
				return h, fmt.Errorf("field %q: %v", f.key, err)
			}
		}
	}
	h.Patch = top["patch"]
	h.Kind = top["kind"]
	_, h.From = top["from"]
	return h, nil
}

// Parse validates data as a `delta` or `event` frame of PROTOCOL.md and returns its
// header fields. It never retains data beyond the returned Message. It is the one
// parser of bus messages: what it accepts reaches clients verbatim, so it refuses what
// is not such a frame of version 2, which every client may rely on: a delta without a
// valid epoch, a delta carrying `from` (catch-up deltas are made by the gateway, for
// the connections that opted in), an event without a non-empty string `kind`, and any
// text that is not valid UTF-8 (encoding/json accepts invalid bytes in strings, and one
// such text frame makes browsers close the connection: one bad publish would cut every
// viewer).
func Parse(data []byte) (Message, error) {
	if len(data) > MaxMessageBytes {
		return Message{}, fmt.Errorf("%w: %d bytes over the %d-byte limit", ErrInvalidMessage, len(data), MaxMessageBytes)
	}
	if !utf8.Valid(data) {
		return Message{}, fmt.Errorf("%w: not valid UTF-8", ErrInvalidMessage)
	}
	h, err := decodeHeader(data)
	if err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if !ValidMatchID(h.Match) {
		return Message{}, fmt.Errorf("%w: bad match id %q", ErrInvalidMessage, h.Match)
	}
	if h.TS == nil {
		return Message{}, fmt.Errorf("%w: missing ts", ErrInvalidMessage)
	}
	m := Message{Match: h.Match, TS: *h.TS, Data: data}
	switch h.Type {
	case "delta":
		m.Kind = KindDelta
		if h.Seq == nil || *h.Seq == 0 {
			return Message{}, fmt.Errorf("%w: delta without a seq ≥ 1", ErrInvalidMessage)
		}
		m.Seq = *h.Seq
		if h.Epoch == nil {
			return Message{}, fmt.Errorf("%w: delta without an epoch", ErrInvalidMessage)
		}
		if !ValidEpoch(*h.Epoch) {
			return Message{}, fmt.Errorf("%w: bad epoch %.40q", ErrInvalidMessage, *h.Epoch)
		}
		m.Epoch = *h.Epoch
		if h.From {
			return Message{}, fmt.Errorf("%w: delta carries from (catch-up deltas are the gateway's)", ErrInvalidMessage)
		}
		switch h.Prio {
		case "high":
			m.Prio = PrioHigh
		case "normal":
			m.Prio = PrioNormal
		default:
			return Message{}, fmt.Errorf("%w: delta prio %q is not high or normal", ErrInvalidMessage, h.Prio)
		}
		if len(h.Patch) == 0 || h.Patch[0] != '{' {
			return Message{}, fmt.Errorf("%w: delta patch is not a JSON object", ErrInvalidMessage)
		}
	case "event":
		m.Kind = KindEvent
		if h.Prio != "low" {
			return Message{}, fmt.Errorf("%w: event prio %q is not low", ErrInvalidMessage, h.Prio)
		}
		if h.Seq != nil || h.Epoch != nil || h.Patch != nil || h.From {
			// A client tells a delta by its stream fields; an event has none of them.
			return Message{}, fmt.Errorf("%w: event carries a delta's seq, epoch, patch or from", ErrInvalidMessage)
		}
		var kind string
		if len(h.Kind) == 0 || h.Kind[0] != '"' || json.Unmarshal(h.Kind, &kind) != nil || kind == "" {
			return Message{}, fmt.Errorf("%w: event without a kind (a non-empty string)", ErrInvalidMessage)
		}
		m.Prio = PrioLow
	default:
		return Message{}, fmt.Errorf("%w: type %q is not delta or event", ErrInvalidMessage, h.Type)
	}
	return m, nil
}

// MaxMatchIDLen is the longest match id PROTOCOL.md allows.
const MaxMatchIDLen = 64

// ValidMatchID reports whether s is 1 to 64 characters of A-Z a-z 0-9 _ -.
func ValidMatchID(s string) bool {
	if len(s) == 0 || len(s) > MaxMatchIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
