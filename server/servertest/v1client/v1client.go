// Package v1client is a client of PROTOCOL.md version 1 for tests: it ignores `epoch`
// wherever it appears, as clients written before epochs do. It lives apart from
// servertest because it uses package client (whose tests use servertest).
package v1client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"crease/client"
	"crease/server/servertest"
)

// Client follows the version 1 client algorithm of PROTOCOL.md for one match over a
// raw WebSocket, and ignores `epoch` wherever it appears: it reads a delta's seq and
// patch only, and a snapshot's seq and state. It is the old client that a stream
// starting a new epoch must not freeze: only the gateway's `resync` makes it refetch.
// Beside it, a client.Checker watches the same frames with epochs, for rules 1 and 2.
type Client struct {
	conn    *servertest.WSConn
	httpURL string
	match   string

	mu       sync.Mutex
	state    json.RawMessage // nil until the first snapshot
	seq      uint64
	waiting  bool      // for a snapshot: deltas are buffered
	buffered []v1Delta // while waiting, in arrival order
	check    *client.Checker
	fetching bool
	refetch  bool // a resync or gap came while fetching
	resyncs  map[string]int
	deltas   int
	err      error // why the reader stopped
	closed   bool
	done     chan struct{}
}

// Dial connects a Client to the gateway at wsAddr, subscribed to match at connect
// time, fetching snapshots from httpURL. It is closed when the test ends.
func Dial(t testing.TB, wsAddr, httpURL, match string) *Client {
	t.Helper()
	conn, resp, err := servertest.DialWS(wsAddr, "/ws?match="+match, nil, "")
	if err != nil || conn == nil {
		t.Fatalf("v1client: dial: %v %v", resp, err)
	}
	c := &Client{conn: conn, httpURL: httpURL, match: match, waiting: true,
		check: client.NewChecker(), resyncs: map[string]int{}, done: make(chan struct{})}
	c.check.Connected()
	go c.read()
	t.Cleanup(c.Close)
	return c
}

// Close ends the connection and waits for the reader.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.conn.Close()
	<-c.done
}

func (c *Client) read() {
	defer close(c.done)
	for {
		f, err := c.conn.Next(time.Now().Add(time.Hour))
		if err == nil && f.Close != 0 {
			err = fmt.Errorf("closed by the gateway with %d", f.Close)
		}
		if err != nil {
			c.mu.Lock()
			if !c.closed {
				c.err = err
			}
			c.mu.Unlock()
			return
		}
		c.frame(f)
	}
}

func (c *Client) frame(f servertest.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.check.Frame(f.Raw)
	if f.Match != c.match {
		return
	}
	switch f.Type {
	case "subscribed":
		c.fetchLocked()
	case "resync":
		var r struct{ Reason string }
		_ = json.Unmarshal(f.Raw, &r)
		c.resyncs[r.Reason]++
		c.waiting = true
		c.fetchLocked()
	case "delta":
		var d v1Delta
		if err := json.Unmarshal(f.Raw, &d); err != nil {
			c.err = err
			return
		}
		c.deltas++
		if c.waiting {
			c.buffered = append(c.buffered, d)
			return
		}
		c.applyLocked(d)
	}
}

// v1Delta is what a version 1 client reads of a delta.
type v1Delta struct {
	Seq   uint64
	Patch json.RawMessage
}

// applyLocked applies d to the held state: a stale seq is skipped, the next one applied,
// a later one is a gap (refetch).
func (c *Client) applyLocked(d v1Delta) {
	switch {
	case d.Seq <= c.seq:
	case d.Seq == c.seq+1:
		st, err := jsonpatch.MergePatch(c.state, d.Patch)
		if err != nil {
			c.err = err
			return
		}
		c.state, c.seq = st, d.Seq
	default:
		c.waiting = true
		c.buffered = append(c.buffered, d)
		c.fetchLocked()
	}
}

// fetchLocked fetches the snapshot unless a fetch is out (then it is fetched again
// after it), retrying 503 and 404 (a store that lost its data, a match not started).
func (c *Client) fetchLocked() {
	if c.fetching {
		c.refetch = true
		return
	}
	c.fetching = true
	c.check.SnapshotRequested(c.match)
	go func() {
		for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
			snap, err := c.get()
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				return
			}
			if err == nil {
				c.check.Snapshot(snap)
				c.fetching = false
				if c.refetch {
					// The resync came after this fetch was sent: only a later one will do.
					c.refetch = false
					c.fetchLocked()
					c.mu.Unlock()
					return
				}
				// Version 1: the snapshot is the state, then the buffered deltas after it.
				c.state, c.seq, c.waiting = snap.State, snap.Seq, false
				list := c.buffered
				c.buffered = nil
				for _, d := range list {
					if c.waiting {
						c.buffered = append(c.buffered, d)
					} else {
						c.applyLocked(d)
					}
				}
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			time.Sleep(wait) // a client's retry backoff, not a synchronisation
		}
	}()
}

// get reads the snapshot as a version 1 client does: seq and state, epoch ignored.
func (c *Client) get() (client.Snapshot, error) {
	resp, err := http.Get(c.httpURL + "/v1/matches/" + c.match)
	if err != nil {
		return client.Snapshot{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return client.Snapshot{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return client.Snapshot{}, fmt.Errorf("snapshot: HTTP %d", resp.StatusCode)
	}
	var s struct {
		Seq   uint64
		State json.RawMessage
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return client.Snapshot{}, err
	}
	// The Checker is told the epoch (it checks rule 1 per epoch); the stream is not.
	var e struct{ Epoch string }
	_ = json.Unmarshal(body, &e)
	return client.Snapshot{Match: c.match, Epoch: e.Epoch, Seq: s.Seq, State: s.State}, nil
}

// Converged returns nil once the client holds final's seq and state, with no rule 1 or
// 2 violation seen; otherwise what differs (for servertest.Eventually).
func (c *Client) Converged(final client.Snapshot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return fmt.Errorf("v1 client stopped: %w", c.err)
	}
	if v := c.check.Violations(); len(v) > 0 {
		return fmt.Errorf("v1 client saw %v", v)
	}
	if c.waiting || c.seq != final.Seq {
		return fmt.Errorf("v1 client at seq %d (waiting %v, fetching %v), want %d", c.seq, c.waiting, c.fetching, final.Seq)
	}
	if eq, err := client.JSONEqual(c.state, final.State); err != nil || !eq {
		return fmt.Errorf("v1 client state %s, want %s (%v)", c.state, final.State, err)
	}
	return nil
}

// Resyncs returns how many `resync` frames with reason came.
func (c *Client) Resyncs(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resyncs[reason]
}

// Deltas returns how many delta frames came.
func (c *Client) Deltas() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deltas
}
