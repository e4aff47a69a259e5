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

// sub is one subscription of a connection. Without --snapshot-url only match and
// last.seq are used: last.seq is the seq of the last delta, checked to grow by one.
type sub struct {
	match string
	last  seqKey // the seq of the state held
	// With --snapshot-url (chain.go):
	ref               *matchRef
	seen              seqKey // the last delta received
	waiting           bool   // a snapshot was asked for; deltas are buffered
	bufFirst, bufLast seqKey // the deltas buffered while waiting
	resynced          bool   // a resync came since the last delta: one gap is covered
	fresh             bool   // no delta since the snapshot that had nothing buffered
	bad               bool   // saw a divergent delta or snapshot
	asks              int    // snapshot requests since the last one answered
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
	gen      uint32 // incremented at each dial: answers for an older one are dropped
	slow     bool   // reads at most --slow-rate bytes per second once open
	// With --cookies: the cookie the last upgrade answer set, and the gateway the
	// cookie sent with this attempt names ("" if none).
	cookie     string
	cookieNode string
	node       string // the gateway its hello named
}
