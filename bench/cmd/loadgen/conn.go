package main

import (
	"time"
)

// Connection states.
const (
	stDialing = iota
	stHandshake
	stOpen
	stClosed
)

// Indices of received-frame counters.
const (
	rHello = iota
	rSubscribed
	rDelta
	rEvent
	rResync
	rReconnect
	rError
	rOther
	rBinary
	rPing
	nRecv
)

var recvNames = [nRecv]string{"hello", "subscribed", "delta", "event", "resync", "reconnect", "error", "other", "binary", "ping"}

type sub struct {
	match string
	last  uint64
}

// conn is owned by one worker once dialed; the dialer only creates and registers it.
type conn struct {
	id       int
	fd       int
	w        *worker
	state    int
	stalled  bool
	match    string
	buf      []byte // partial handshake answer or partial frame
	subs     []sub
	gotClose bool
	attempt  int
	opened   bool  // was open at least once
	drained  bool  // a reconnect frame came: wait afterMs, nothing else
	afterMs  int64 // from a reconnect frame
	key      string
	started  time.Time
}
