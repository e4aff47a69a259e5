package shard

import (
	"strconv"

	"crease/bus"
	"crease/codec"
)

// Kind of a queued frame. The first two are bus kinds; the others are frames the gateway
// makes for one connection.
const (
	KindDelta   = uint8(bus.KindDelta)
	KindEvent   = uint8(bus.KindEvent)
	KindControl = uint8(10) // hello, subscribed, error, pong, ping, reconnect
	KindResync  = uint8(11) // a resync marker standing in for dropped deltas of Match
)

// Frame is one pre-encoded server frame. Bus frames are encoded once per gateway and
// shared read-only by every shard and connection; queues hold pointers, never copies.
type Frame struct {
	Bytes []byte // the whole WebSocket frame, header included
	Match string
	Seq   uint64
	TS    int64 // publish time, Unix µs (bus frames)
	Kind  uint8
	Prio  bus.Prio
	// Reason is a resync marker's reason.
	Reason bus.ResyncReason
}

// NewBusFrame encodes a validated bus message once.
func NewBusFrame(m bus.Message) *Frame {
	return &Frame{
		Bytes: codec.TextFrame(m.Data),
		Match: m.Match,
		Seq:   m.Seq,
		TS:    m.TS,
		Kind:  uint8(m.Kind),
		Prio:  m.Prio,
	}
}

// ControlText makes a one-connection text frame (hello, subscribed, error, reconnect).
func ControlText(json []byte) *Frame {
	return &Frame{Bytes: codec.TextFrame(json), Kind: KindControl, Prio: bus.PrioHigh}
}

// ControlRaw wraps an already encoded frame (ping, pong, close).
func ControlRaw(b []byte) *Frame {
	return &Frame{Bytes: b, Kind: KindControl, Prio: bus.PrioHigh}
}

func resyncFrame(match string, reason bus.ResyncReason) *Frame {
	b := make([]byte, 0, 48+len(match))
	b = append(b, `{"type":"resync","match":`...)
	b = strconv.AppendQuote(b, match)
	b = append(b, `,"reason":"`...)
	b = append(b, reason...)
	b = append(b, `"}`...)
	return &Frame{Bytes: codec.TextFrame(b), Match: match, Kind: KindResync, Prio: bus.PrioHigh, Reason: reason}
}

// SubscribedJSON is the `subscribed` message for match.
func SubscribedJSON(match string) []byte {
	b := make([]byte, 0, 40+len(match))
	b = append(b, `{"type":"subscribed","match":`...)
	b = strconv.AppendQuote(b, match)
	return append(b, '}')
}

// ErrorJSON is an `error` message; match is "" when the error concerns no match.
func ErrorJSON(code, match, message string) []byte {
	b := make([]byte, 0, 64+len(code)+len(match)+len(message))
	b = append(b, `{"type":"error","code":`...)
	b = strconv.AppendQuote(b, code)
	if match != "" {
		b = append(b, `,"match":`...)
		b = strconv.AppendQuote(b, match)
	}
	b = append(b, `,"message":`...)
	b = strconv.AppendQuote(b, message)
	return append(b, '}')
}
