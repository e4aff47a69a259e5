package redis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"crease/bus"
	"crease/wire"
)

// snapCache serves GET /v1/matches/{id} without a Redis GET per request. A match this
// gateway is subscribed to is tracked (bus.Tracker): its cached snapshot is served while
// it is current, that is while nothing was delivered or lost since the GET that read it
// was sent, or while it is at the position last delivered with no loss since. Any other
// request joins the running fetch of its match when nothing was delivered or lost since
// that fetch was sent (an older fetch could miss a delta the requester will never get),
// or starts one. A match this gateway is not subscribed to (its clients' WebSockets are
// elsewhere, or a page lists it) is cached for untrackedTTL: nobody here can tell
// whether it is current, and a client given a snapshot that old recovers by the client
// algorithm (buffered deltas newer than it are applied; a hole is a resync), while a
// burst of readers costs one GET per TTL.
//
// The Tracker records a loss before the Sink hears of it, so a client that fetches
// because of a `resync` never gets a snapshot read before the loss.
type snapCache struct {
	mu      sync.Mutex
	entries map[string]*snapEntry
	// answered, when set (by tests, before any Snapshot), runs when a GET's answer came,
	// before it is judged: what the deliverer does meanwhile is the GET-in-flight window.
	answered func(match string)
}

type snapEntry struct {
	snap     *bus.Snapshot
	tracked  bool      // snap was read while the match was tracked
	validGen uint64    // the Tracker's Gen when the GET of snap was sent
	valid    bool      // the Gen had not changed when its answer came
	fetched  time.Time // when snap was read (untracked entries)
	call     *snapCall // the latest running fetch
}

// untrackedTTL is how long a snapshot of a match nobody here subscribes to is reused.
const untrackedTTL = 250 * time.Millisecond

type snapCall struct {
	done    chan struct{}
	tracked bool
	gen     uint64 // the Tracker's Gen when it was sent
	snap    bus.Snapshot
	err     error
}

func newSnapCache() *snapCache { return &snapCache{entries: map[string]*snapEntry{}} }

// untrack forgets the cached snapshot of a match whose subscription ended.
func (c *snapCache) untrack(match string) {
	c.mu.Lock()
	if e := c.entries[match]; e != nil && e.tracked {
		e.snap = nil
		if e.call == nil {
			delete(c.entries, match)
		}
	}
	c.mu.Unlock()
}

// current reports whether e's snapshot may be served to a request arriving at p.
func (e *snapEntry) current(p bus.Position, tracked bool) bool {
	switch {
	case e.snap == nil || e.tracked != tracked:
		return false
	case !tracked:
		return time.Since(e.fetched) < untrackedTTL
	case e.valid && e.validGen == p.Gen:
		return true
	}
	return p.Current && e.snap.Epoch == p.Epoch && e.snap.Seq == p.Seq
}

// position returns the Tracker's record of match; false when it is not tracked.
func (b *Bus) position(match string) (bus.Position, bool) {
	if tr := b.track.Load(); tr != nil {
		return tr.Position(match)
	}
	return bus.Position{}, false
}

// Snapshot returns the stored snapshot of match or bus.ErrUnknownMatch, from the cache
// when it is current, else from one GET shared by the concurrent callers it can serve.
//
// It returns ErrStoreBehind instead of a snapshot older than a delta this gateway has
// already delivered of the same epoch, or of an epoch the stream has left (or instead of
// ErrUnknownMatch for such a match): Redis lost data (a restart without persistence, a
// failover to a lagging replica) and the publisher has not re-seeded it yet. The HTTP
// answer is then 503, which clients retry, rather than a 404 or an old state that would
// claim deltas the clients have seen never happened.
func (b *Bus) Snapshot(ctx context.Context, match string) (bus.Snapshot, error) {
	if !bus.ValidMatchID(match) {
		return bus.Snapshot{}, fmt.Errorf("%w: %q", bus.ErrUnknownMatch, match)
	}
	sc := b.snaps
	sc.mu.Lock()
	pos, tracked := b.position(match)
	e := sc.entries[match]
	if e != nil && e.current(pos, tracked) {
		s := *e.snap
		sc.mu.Unlock()
		b.m.snapshots.WithLabelValues("hit").Inc()
		return s, nil
	}
	if e != nil && e.call != nil && e.call.tracked == tracked && (!tracked || e.call.gen == pos.Gen) {
		call := e.call
		sc.mu.Unlock()
		b.m.snapshots.WithLabelValues("coalesced").Inc()
		select {
		case <-call.done:
			return call.snap, call.err
		case <-ctx.Done():
			return bus.Snapshot{}, ctx.Err()
		}
	}
	if e == nil {
		e = &snapEntry{}
		sc.entries[match] = e
	}
	call := &snapCall{done: make(chan struct{}), tracked: tracked, gen: pos.Gen}
	e.call = call
	sc.mu.Unlock()
	b.m.snapshots.WithLabelValues("miss").Inc()

	// The fetch is shared: it must not die with the first caller's context.
	fctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	call.snap, call.err = b.fetchSnapshot(fctx, match)
	cancel()
	if sc.answered != nil {
		sc.answered(match)
	}
	// Every delta delivered before the GET was sent had its snapshot stored before it
	// was published (one script), and so had the first one after a loss if it was
	// delivered while the GET was out, unless it was published after the GET (then it is
	// the snapshot's seq + 1): an answer older than either means Redis lost data, or is
	// a primary that lost its slot (the Tracker decides, and records the snapshot for the
	// first delta after a loss, for the time this answer is served from the cache too).
	if tracked {
		unknown := errors.Is(call.err, bus.ErrUnknownMatch)
		if (unknown || call.err == nil) && !b.track.Load().Served(match, pos, !unknown, call.snap.Epoch, call.snap.Seq) {
			now, _ := b.position(match)
			call.snap, call.err = bus.Snapshot{}, fmt.Errorf("%w: %s: the store is behind %s:%d, already delivered", ErrStoreBehind, match, now.Epoch, now.Seq)
			b.m.snapshots.WithLabelValues("behind").Inc()
		}
	}

	sc.mu.Lock()
	if e.call == call {
		e.call = nil
	}
	now, stillTracked := b.position(match)
	switch {
	case call.err != nil:
		if e.call == nil && e.snap == nil {
			delete(sc.entries, match)
		}
	case tracked && stillTracked && (e.snap == nil || !e.tracked || call.gen >= e.validGen):
		// (A fetch sent before the one whose answer is cached does not replace it.)
		s := call.snap
		// Unchanged Gen: nothing was delivered or lost while the GET was out, so no newer
		// snapshot exists but one whose delta is still to come (and will change the Gen).
		// This revalidates a quiet match after a loss.
		e.snap, e.tracked, e.validGen, e.valid, e.fetched = &s, true, call.gen, now.Gen == call.gen, time.Time{}
	case !tracked && !stillTracked:
		s := call.snap
		e.snap, e.tracked, e.valid, e.fetched = &s, false, false, time.Now()
	}
	sc.mu.Unlock()
	close(call.done)
	return call.snap, call.err
}

func (b *Bus) fetchSnapshot(ctx context.Context, match string) (bus.Snapshot, error) {
	c := b.cli()
	if c == nil || b.closed.Load() {
		return bus.Snapshot{}, ErrNotConnected
	}
	b.m.gets.Inc()
	raw, err := c.Do(ctx, c.B().Get().Key(b.snapKey(match)).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return bus.Snapshot{}, fmt.Errorf("%w: %s", bus.ErrUnknownMatch, match)
	}
	if err != nil {
		return bus.Snapshot{}, fmt.Errorf("redis bus: snapshot of %s: %w", match, err)
	}
	snap, _, err := parseSnapshot(match, raw)
	return snap, err
}

// Matches lists the matches in the live index, sorted by id, with title, seq and the
// viewers of every node whose count has not expired.
func (b *Bus) Matches(ctx context.Context) ([]bus.MatchInfo, error) {
	c := b.cli()
	if c == nil || b.closed.Load() {
		return nil, ErrNotConnected
	}
	ids, err := c.Do(ctx, c.B().Zrange().Key(b.matchesKey()).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("redis bus: list matches: %w", err)
	}
	sort.Strings(ids)
	cmds := make(rueidis.Commands, 0, 2*len(ids))
	for _, id := range ids {
		cmds = append(cmds, c.B().Hgetall().Key(b.infoKey(id)).Build(), c.B().Hgetall().Key(b.viewersKey(id)).Build())
	}
	res := c.DoMulti(ctx, cmds...)
	now := time.Now().UnixMilli()
	out := make([]bus.MatchInfo, 0, len(ids))
	for i, id := range ids {
		info, err := res[2*i].AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("redis bus: info of %s: %w", id, err)
		}
		if len(info) == 0 {
			continue // indexed but its keys are gone
		}
		mi := bus.MatchInfo{Match: id, Title: info["title"], Epoch: info["epoch"]}
		mi.Seq, _ = strconv.ParseUint(info["seq"], 10, 64)
		views, err := res[2*i+1].AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("redis bus: viewers of %s: %w", id, err)
		}
		for _, v := range views {
			if n, ok := parseViewers(v, now); ok {
				mi.Viewers += n
			}
		}
		out = append(out, mi)
	}
	return out, nil
}

// A node's viewer count is stored as "COUNT:EXPIRES_UNIX_MS" in the match's viewers
// hash (field = NodeID): per-field expiry without Redis 7.4's HEXPIRE.
func formatViewers(n int, expires int64) string {
	return strconv.Itoa(n) + ":" + strconv.FormatInt(expires, 10)
}

func parseViewers(v string, now int64) (int64, bool) {
	count, exp, ok := strings.Cut(v, ":")
	if !ok {
		return 0, false
	}
	n, err1 := strconv.ParseInt(count, 10, 64)
	e, err2 := strconv.ParseInt(exp, 10, 64)
	if err1 != nil || err2 != nil || e <= now || n < 0 {
		return 0, false
	}
	return n, true
}

// viewers holds the latest counts from SetViewers for viewersLoop.
type viewers struct {
	mu      sync.Mutex
	latest  map[string]int
	changed bool
	wake    chan struct{}
	// reports counts the reports written (and announced), for tests to wait on.
	reports atomic.Uint64
}

// SetViewers records this node's viewer count per match (the gateway calls it
// periodically, with every match it serves). It never blocks: a goroutine writes the
// counts to Redis with ViewerTTL; a match missing from counts is removed for this node.
func (b *Bus) SetViewers(counts map[string]int) {
	cp := make(map[string]int, len(counts))
	for m, n := range counts {
		if bus.ValidMatchID(m) && n > 0 {
			cp[m] = n
		}
	}
	b.views.mu.Lock()
	b.views.latest, b.views.changed = cp, true
	b.views.mu.Unlock()
	select {
	case b.views.wake <- struct{}{}:
	default:
	}
}

func (b *Bus) viewersLoop() {
	defer b.wg.Done()
	written := map[string]bool{}
	announced := map[string]*announcement{}
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.views.wake:
		}
		b.views.mu.Lock()
		counts, changed := b.views.latest, b.views.changed
		b.views.changed = false
		b.views.mu.Unlock()
		c := b.waitClient(b.ctx)
		if c == nil || !changed {
			continue
		}
		ttl := b.opts.ViewerTTL
		expires := time.Now().Add(ttl).UnixMilli()
		cmds := make(rueidis.Commands, 0, 3*len(counts)+len(written))
		for m, n := range counts {
			key := b.viewersKey(m)
			cmds = append(cmds,
				c.B().Hset().Key(key).FieldValue().FieldValue(b.opts.NodeID, formatViewers(n, expires)).Build(),
				// Extend the key's life, never shorten it: other nodes may use a longer TTL.
				c.B().Pexpire().Key(key).Milliseconds(ttl.Milliseconds()).Nx().Build(),
				c.B().Pexpire().Key(key).Milliseconds(ttl.Milliseconds()).Gt().Build())
		}
		for m := range written {
			if _, ok := counts[m]; !ok {
				cmds = append(cmds, c.B().Hdel().Key(b.viewersKey(m)).Field(b.opts.NodeID).Build())
			}
		}
		if len(cmds) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(b.ctx, ttl)
		failed := false
		for _, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				failed = true
				b.log.Debug("writing viewer counts failed", "err", err)
				break
			}
		}
		if !failed {
			clear(written)
			for m := range counts {
				written[m] = true
			}
			if b.started.Load() {
				b.announceViewers(ctx, c, counts, announced)
			}
		}
		cancel()
		b.views.reports.Add(1)
	}
}

// viewerRepeat: an unchanged total is announced again every viewerRepeat reports (30 s
// at the gateway's default 5 s), for clients that subscribed since and for those whose
// event was dropped (events may be dropped under load).
const viewerRepeat = 6

type announcement struct {
	total int64 // last announced here; -1 none
	quiet int   // reports since, with the total unchanged
}

// announceViewers reads the total viewers (every node's unexpired count) of each match
// this gateway has subscribers of, and queues a low-priority `viewers` event for the
// local subscribers of each match whose total changed since it was last announced here
// (or was announced viewerRepeat reports ago):
//
//	{"type":"event","match":ID,"prio":"low","ts":US,"kind":"viewers","viewers":N}
//
// Each gateway announces to its own subscribers what it reads from Redis, so no node
// is elected and nothing more is published; gateways agree within one viewer interval.
// The event goes through the hand-off queue like a bus message (the deliverer is the
// only caller of the Sink).
func (b *Bus) announceViewers(ctx context.Context, c rueidis.Client, counts map[string]int, announced map[string]*announcement) {
	for m := range announced {
		if _, ok := counts[m]; !ok {
			delete(announced, m) // no local subscribers left: announce afresh next time
		}
	}
	if len(counts) == 0 {
		return
	}
	ids := make([]string, 0, len(counts))
	cmds := make(rueidis.Commands, 0, len(counts))
	for m := range counts {
		ids = append(ids, m)
		cmds = append(cmds, c.B().Hgetall().Key(b.viewersKey(m)).Build())
	}
	now := time.Now()
	for i, r := range c.DoMulti(ctx, cmds...) {
		views, err := r.AsStrMap()
		if err != nil {
			b.log.Debug("reading viewer counts failed", "err", err)
			return
		}
		var total int64
		for _, v := range views {
			if n, ok := parseViewers(v, now.UnixMilli()); ok {
				total += n
			}
		}
		m := ids[i]
		a := announced[m]
		if a == nil {
			a = &announcement{total: -1}
			announced[m] = a
		}
		if a.total == total && a.quiet < viewerRepeat-1 {
			a.quiet++
			continue
		}
		a.total, a.quiet = total, 0
		b.q.pushMessage(m, string(wire.Viewers(m, now.UnixMicro(), total))) // a drop is counted and reported by the deliverer
	}
}
