package shard

import (
	"crease/bus"
	"crease/codec"
	"crease/wire"
)

// FrameKind says what a queued frame is, which decides its lane (events go to the low
// lane, everything else to the state lane) and what the OutboundBudget may do to it.
type FrameKind uint8

// Frame kinds. The first two are the bus kinds; the others are frames the gateway makes
// for one connection.
const (
	KindDelta             = FrameKind(bus.KindDelta)
	KindEvent             = FrameKind(bus.KindEvent)
	KindControl FrameKind = 10 // hello, subscribed, error, pong, ping, reconnect
	KindResync  FrameKind = 11 // a resync marker standing in for dropped deltas of Match
	KindCatchUp FrameKind = 12 // a delta made for one connection: queued deltas of Match composed, or kept (catchup.go)
)

// Frame is one pre-encoded server frame. Bus frames are encoded once per gateway and
// shared read-only by every shard and connection; queues hold pointers, never copies.
type Frame struct {
	Bytes []byte // the whole WebSocket frame, header included
	Match string
	Seq   uint64
	TS    int64 // publish time, Unix µs (bus frames)
	Kind  FrameKind
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
		Kind:  FrameKind(m.Kind),
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
	return &Frame{Bytes: codec.TextFrame(wire.Resync(match, reason)), Match: match, Kind: KindResync, Prio: bus.PrioHigh, Reason: reason}
}
