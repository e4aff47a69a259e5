package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
)

// ErrNotVerified wraps every reason Checker.Verify fails.
var ErrNotVerified = errors.New("client: checker")

// Violation is a breach of delivery rule 1 (order) or 2 (no silent drop) of PROTOCOL.md.
type Violation struct {
	Match  string
	Rule   int    // 1 or 2
	Seq    uint64 // the delta, or the snapshot seq, that revealed it
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("match %s: rule %d at seq %d: %s", v.Match, v.Rule, v.Seq, v.Detail)
}

// checkMatch is the Checker's record of one match.
type checkMatch struct {
	stream *Stream // the state rebuilt from the snapshots and deltas seen
	// On the current connection:
	subscribed bool
	epoch      string // epoch of the last delta ("" none yet, or not said)
	announced  bool   // a `resync{epoch}` came after the last delta
	last       uint64 // seq of the last delta of epoch (or the recovered position)
	need       uint64 // the next seq of needEpoch that must arrive unless covered (0: not known yet)
	needEpoch  string
	covered    bool   // a `resync` arrived that no snapshot has answered yet
	resyncs    uint64 // `resync` frames
	reqPending bool
	reqValid   bool     // requested after `subscribed`
	reqResyncs uint64   // resyncs when requested
	lastAtReq  Position // the last delta when requested
	sinceReq   []Delta  // deltas delivered while the request was out (patches dropped)
}

// Checker is the "nothing lost" checker of fault tests: it watches one Client (as its
// Observer) or any connection fed by hand, checks delivery rules 1 and 2 per match, and
// rebuilds each match's state so that Verify can compare it with the final snapshot.
//
// What it enforces, per connection and match, after `subscribed`:
//   - rule 1: delta seqs strictly increase within an epoch, and a delta of a new epoch
//     comes only after a `resync` with reason `epoch`;
//   - rule 2: a delta skipping seqs needs a `resync` before it that no snapshot has
//     answered yet, unless it is a catch-up delta whose `from` covers the skipped ones;
//     and a snapshot at N, requested after `subscribed` with no `resync` while it was
//     out, means every delta above N was published after the request and must arrive:
//     the first one of its epoch seen above N must be N+1 (or have `from` ≤ N);
//   - `subscribed` with `recovered:true` answers a subscribe with `since` = the position
//     the rebuilt state holds (as the Client sends it): the deltas after it must follow
//     without a hole.
//
// It is safe for concurrent use.
type Checker struct {
	mu         sync.Mutex
	matches    map[string]*checkMatch
	violations []Violation
	conns      int
}

// NewChecker returns an empty Checker.
func NewChecker() *Checker { return &Checker{matches: map[string]*checkMatch{}} }

func (c *Checker) get(match string) *checkMatch {
	m := c.matches[match]
	if m == nil {
		m = &checkMatch{stream: NewStream()}
		c.matches[match] = m
	}
	return m
}

func (c *Checker) violate(match string, rule int, seq uint64, format string, args ...any) {
	c.violations = append(c.violations, Violation{Match: match, Rule: rule, Seq: seq, Detail: fmt.Sprintf(format, args...)})
}

// Connected starts a new connection: nothing carries over but the rebuilt states, which
// wait for a snapshot again.
func (c *Checker) Connected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns++
	for _, m := range c.matches {
		m.stream.Resync()
		*m = checkMatch{stream: m.stream}
	}
}

// Frame records one server frame. Frames other than subscribed, delta and resync are
// ignored, and so are deltas of matches not subscribed on this connection (they may be
// in flight after an unsubscribe).
func (c *Checker) Frame(raw []byte) {
	var f frame
	if json.Unmarshal(raw, &f) != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.Type {
	case "subscribed":
		m := c.get(f.Match)
		if m.subscribed { // a second `subscribed` (subscribe twice) changes nothing
			return
		}
		m.subscribed, m.epoch, m.announced, m.last, m.need, m.needEpoch, m.covered = true, "", false, 0, 0, "", false
		if f.Recovered && m.stream.HasState() {
			p := m.stream.Position()
			m.stream.Resume()
			m.epoch, m.last, m.need, m.needEpoch = p.Epoch, p.Seq, p.Seq+1, p.Epoch
		}
	case "resync":
		if m := c.matches[f.Match]; m != nil && m.subscribed {
			m.covered = true
			m.announced = m.announced || f.Reason == "epoch"
			m.resyncs++
			m.stream.Resync()
		}
	case "delta":
		m := c.matches[f.Match]
		if m == nil || !m.subscribed {
			return
		}
		if f.Epoch != "" && m.epoch != "" && f.Epoch != m.epoch {
			if !m.announced {
				c.violate(f.Match, 1, f.Seq, "delta of epoch %s after epoch %s without resync{epoch}", f.Epoch, m.epoch)
			}
			m.last = 0
		}
		if f.Epoch != "" {
			m.epoch, m.announced = f.Epoch, false
		}
		if !sameEpoch(m.needEpoch, f.Epoch) {
			m.need, m.needEpoch = 0, f.Epoch // a new stream: what was owed of the old one is moot
		}
		if m.last > 0 && f.Seq <= m.last {
			c.violate(f.Match, 1, f.Seq, "delta %d after delta %d", f.Seq, m.last)
			return
		}
		if !m.covered && m.need > 0 && f.Seq > m.need && (f.From == nil || *f.From >= m.need) {
			c.violate(f.Match, 2, f.Seq, "deltas %d..%d missing without resync", m.need, f.Seq-1)
		}
		m.last = f.Seq
		m.need = max(m.need, f.Seq+1)
		if m.needEpoch == "" {
			m.needEpoch = f.Epoch
		}
		d := f.delta()
		if m.reqPending {
			m.sinceReq = append(m.sinceReq, Delta{Epoch: d.Epoch, Seq: d.Seq, From: d.From, CatchUp: d.CatchUp})
		}
		m.stream.ApplyDelta(d) // a bad patch shows as a state that does not verify
	}
}

// SnapshotRequested records that a snapshot of match is being fetched.
func (c *Checker) SnapshotRequested(match string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.get(match)
	m.reqPending, m.reqValid, m.reqResyncs, m.lastAtReq, m.sinceReq = true, m.subscribed, m.resyncs, Position{m.epoch, m.last}, m.sinceReq[:0]
}

// Snapshot records the answer of the fetch.
func (c *Checker) Snapshot(s Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.get(s.Match)
	m.stream.ApplySnapshot(s) // a bad state shows in Verify
	if m.reqPending && m.reqValid && m.reqResyncs == m.resyncs {
		// Deltas above N were published after the GET. (A delta above N seen before the
		// request means a lagging snapshot, which proves nothing about delivery.)
		if !sameEpoch(m.lastAtReq.Epoch, s.Epoch) || m.lastAtReq.Seq <= s.Seq {
			for _, q := range m.sinceReq {
				if sameEpoch(q.Epoch, s.Epoch) && q.Seq > s.Seq {
					if q.base() > s.Seq {
						c.violate(s.Match, 2, s.Seq, "snapshot at %d, but the first delta above it was %d", s.Seq, q.Seq)
					}
					break
				}
			}
		}
		m.covered = false
		if m.epoch == "" {
			m.epoch = s.Epoch // the stream this connection follows, until a resync{epoch}
		}
		if sameEpoch(m.needEpoch, s.Epoch) {
			m.need = max(m.need, s.Seq+1)
		} else {
			m.need = s.Seq + 1
		}
		if s.Epoch != "" {
			m.needEpoch = s.Epoch
		}
	}
	m.reqPending, m.sinceReq = false, nil
}

// Violations returns the violations seen so far, in order.
func (c *Checker) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.violations)
}

// Stats returns the counters of the rebuilt stream of match.
func (c *Checker) Stats(match string) StreamStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.matches[match]; m != nil {
		return m.stream.Stats()
	}
	return StreamStats{}
}

// Verify checks that no violation was seen for final.Match and that the rebuilt state is
// exactly final: same seq, semantically equal JSON. Call it once deliveries are quiet.
func (c *Checker) Verify(final Snapshot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, v := range c.violations {
		if v.Match == final.Match {
			errs = append(errs, fmt.Errorf("%w: %s", ErrNotVerified, v))
		}
	}
	m := c.matches[final.Match]
	switch {
	case m == nil || !m.stream.HasState():
		errs = append(errs, fmt.Errorf("%w: match %s: no state rebuilt", ErrNotVerified, final.Match))
	case m.stream.Waiting():
		errs = append(errs, fmt.Errorf("%w: match %s: still waiting for a snapshot at seq %d (%d pending)", ErrNotVerified, final.Match, m.stream.Seq(), m.stream.Pending()))
	case m.stream.Seq() != final.Seq:
		errs = append(errs, fmt.Errorf("%w: match %s: rebuilt seq %d, final seq %d", ErrNotVerified, final.Match, m.stream.Seq(), final.Seq))
	default:
		if eq, err := JSONEqual(m.stream.State(), final.State); err != nil || !eq {
			errs = append(errs, fmt.Errorf("%w: match %s at seq %d: rebuilt state %s, final %s (%v)", ErrNotVerified, final.Match, final.Seq, m.stream.State(), final.State, err))
		}
	}
	return errors.Join(errs...)
}

// JSONEqual reports whether a and b hold the same JSON value (key order and spacing
// aside).
func JSONEqual(a, b []byte) (bool, error) {
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		return false, err
	}
	return reflect.DeepEqual(va, vb), nil
}

var _ Observer = (*Checker)(nil)
