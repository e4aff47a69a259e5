package shard

import (
	"time"

	"crease/bus"
	"crease/wire"
)

// Recovery: a subscribe with `since` (PROTOCOL.md). The connection joins the match at
// once, but on the side (its subRef.pos is -(i+1), i its place in the match's pending
// list), so that fan-out does not reach it; the gateway is asked for the deltas after
// its position (Hooks.History); its answer, posted to the inbox, is queued behind
// `subscribed` with `recovered:true`, and the connection then takes live deltas above
// the last one replayed, never one twice (rule 1) and never one missing (rule 2).
//
// A waiting connection holds nothing: every live delta the loop drains before the
// answer is covered by it (HistoryAnswer), which the loop checks against the last seq it
// drained (matchFeed.seen). A loss of the match (Lost, an inbox overflow) before the
// answer asks again; after it, the connection is resynced like any other. All of it runs
// on the loop.

// Recovery bounds.
const (
	// DefaultRecoveryWait is how long a subscribe with `since` waits for its answer
	// before it is answered `recovered:false`.
	DefaultRecoveryWait = 5 * time.Second
	// maxRecoveryTries bounds the requests of one recovery (one more after each loss).
	maxRecoveryTries = 4
	// recoverySweep is how often waiting recoveries are checked for their deadline.
	recoverySweep = 250 * time.Millisecond
)

// matchFeed is the recovery side of one match's Subscribers.
type matchFeed struct {
	seen    uint64        // the last delta seq drained since the match's last loss here; 0 none
	pending []*pendingSub // subscriptions not live yet: waiting for an answer, or catching up
}

// pendingSub is one connection's subscription with `since` until it is live.
type pendingSub struct {
	c        *Conn
	subs     *Subscribers
	since    Since
	id       uint64 // the request waited for; 0 once answered (catching up)
	upTo     uint64 // catching up: every delta of the match up to here is queued for c
	deadline int64  // shard clock ns: a wait gives up then
	tries    uint8
	idx      int32 // place in subs.feed.pending
	// repeats are the subscribes of c to the match that came while it waited, in
	// order: each is answered `subscribed` right after the first answer (repeatPlain,
	// repeatSame, repeatOther), so that none overtakes it.
	repeats []uint8
}

// The kinds of a repeated subscribe (pendingSub.repeats).
const (
	repeatPlain uint8 = iota // without since: `subscribed`
	repeatSame               // with the since waited for: `subscribed` with the first answer's `recovered`
	repeatOther              // with another since: `subscribed` with `recovered:false`
)

// recoveryState is the shard's record of the requests it waits for.
type recoveryState struct {
	reqs      map[uint64]*pendingSub
	nextID    uint64
	nextSweep int64
}

// Resubscribed answers a subscribe of c to a match it is subscribed to already
// (SubAlready from Subscribe or SubscribeSince; since nil for none): it returns the
// `subscribed` to send, or nil while the subscription waits for its replay: the answer
// is then queued right after the first one, when the replay is known. A subscription
// that is live (or whose first answer is queued) is answered at once; with since,
// `recovered:false`, as nothing is replayed for it (the client takes the snapshot
// route, which is always safe).
func (s *Shard) Resubscribed(c *Conn, match string, since *Since) *Frame {
	if i := c.findSub(match); i >= 0 {
		if r := c.sub(i); r.pos < 0 {
			if p := r.s.feed.pending[-r.pos-1]; p.id != 0 {
				kind := repeatPlain
				switch {
				case since != nil && *since == p.since:
					kind = repeatSame
				case since != nil:
					kind = repeatOther
				}
				p.repeats = append(p.repeats, kind)
				return nil
			}
		}
	}
	if since != nil {
		return ControlText(wire.SubscribedRecovered(match, false))
	}
	return s.SubscribedFrame(match)
}

// answerRepeats queues the answers to p's repeated subscribes, after its first answer
// with recovered.
func (s *Shard) answerRepeats(p *pendingSub, recovered bool) {
	for _, kind := range p.repeats {
		switch kind {
		case repeatPlain:
			s.enqueue(p.c, s.SubscribedFrame(p.subs.match))
		case repeatSame:
			s.enqueue(p.c, ControlText(wire.SubscribedRecovered(p.subs.match, recovered)))
		default:
			s.enqueue(p.c, ControlText(wire.SubscribedRecovered(p.subs.match, false)))
		}
	}
	p.repeats = nil
}

// SubscribeSince subscribes c to match from the position since. On SubAdded the shard
// answers `subscribed` itself, with `recovered`, once it knows (at once when the
// gateway recovers nothing). SubAlready and SubTooMany are answered by the caller, as
// for Subscribe (SubAlready with Resubscribed).
func (s *Shard) SubscribeSince(c *Conn, match string, since Since) SubResult {
	if c.Subscribed(match) {
		return SubAlready
	}
	if c.Subscriptions() >= s.opts.MaxSubscriptions {
		return SubTooMany
	}
	if s.hooks.History == nil || since.Epoch == "" {
		r := s.Subscribe(c, match)
		s.Send(c, ControlText(wire.SubscribedRecovered(match, false)))
		s.m.recovery(RecoveryDisabled)
		return r
	}
	subs := s.subscribersOf(match)
	p := &pendingSub{c: c, subs: subs, since: since, deadline: s.now() + int64(s.opts.RecoveryWait), idx: int32(len(subs.feed.pending))}
	subs.feed.pending = append(subs.feed.pending, p)
	c.addSub(subRef{s: subs, pos: -(p.idx + 1)})
	s.m.Subscriptions.Inc()
	s.request(p)
	return SubAdded
}

// request asks the gateway for p's deltas.
func (s *Shard) request(p *pendingSub) {
	if s.rec.reqs == nil {
		s.rec.reqs = make(map[uint64]*pendingSub)
	}
	s.rec.nextID++
	p.id = s.rec.nextID
	p.tries++
	s.rec.reqs[p.id] = p
	s.hooks.History.Request(HistoryRequest{Shard: s.idx, ID: p.id, Match: p.subs.match, Since: p.since})
}

// historyAnswered takes an answer off the inbox.
func (s *Shard) historyAnswered(a *HistoryAnswer) {
	p := s.rec.reqs[a.ID]
	if p == nil {
		return // abandoned: the connection left, gave up, or asked again after a loss
	}
	delete(s.rec.reqs, a.ID)
	p.id = 0
	if !a.OK {
		s.finishPending(p, a.Reason)
		return
	}
	if !covers(a, p.since, p.subs.feed.seen) {
		s.finishPending(p, RecoveryInvalid)
		return
	}
	c := p.c
	s.enqueue(c, ControlText(wire.SubscribedRecovered(p.subs.match, true)))
	s.answerRepeats(p, true)
	s.queueReplay(c, p.since, a)
	s.m.recovery(RecoveryRecovered)
	s.m.Replayed.Add(float64(len(a.Frames)))
	p.upTo = a.Last
	if p.subs.feed.seen >= p.upTo {
		s.goLive(p)
	}
}

// covers checks an answer: the deltas since.Seq+1 .. Last in order, Last at least the
// last delta this loop drained (the ones a waiting connection was not given).
func covers(a *HistoryAnswer, since Since, seen uint64) bool {
	if a.Last < seen || a.Last != since.Seq+uint64(len(a.Frames)) {
		return false
	}
	for i, f := range a.Frames {
		if f.Seq != since.Seq+1+uint64(i) || f.Kind != KindDelta {
			return false
		}
	}
	return true
}

// finishPending answers a subscription that cannot be recovered: `recovered:false`,
// and it is live from here (the client takes the snapshot route; rule 2 owes it only
// the deltas after this `subscribed`).
func (s *Shard) finishPending(p *pendingSub, reason string) {
	s.enqueue(p.c, ControlText(wire.SubscribedRecovered(p.subs.match, false)))
	s.answerRepeats(p, false)
	s.m.recovery(reason)
	s.goLive(p)
}

// goLive moves p's connection among the match's subscribers.
func (s *Shard) goLive(p *pendingSub) {
	s.unlistPending(p)
	subs := p.subs
	subs.conns = append(subs.conns, p.c)
	p.c.setSubPos(subs, int32(len(subs.conns)-1))
}

// unlistPending removes p from its match's pending list and forgets its request.
func (s *Shard) unlistPending(p *pendingSub) {
	if p.id != 0 {
		delete(s.rec.reqs, p.id)
		p.id = 0
	}
	subs := p.subs
	list := subs.feed.pending
	last := len(list) - 1
	if moved := list[last]; moved != p {
		list[p.idx] = moved
		moved.idx = p.idx
		moved.c.setSubPos(subs, -(moved.idx + 1))
	}
	list[last] = nil
	subs.feed.pending = list[:last]
	if len(subs.feed.pending) == 0 {
		subs.feed.pending = nil
	}
}

// dropPending forgets the pending subscription at place i (detach: the connection left
// the match).
func (s *Shard) dropPending(subs *Subscribers, i int) {
	s.unlistPending(subs.feed.pending[i])
}

// noteDelivered runs after a frame was queued for subs' live connections: the last
// seq is noted, and the connections catching up get what is new to them.
func (s *Shard) noteDelivered(subs *Subscribers, f *Frame) {
	if f.Kind == KindDelta {
		subs.feed.seen = f.Seq
	}
	list := subs.feed.pending
	for i := len(list) - 1; i >= 0; i-- { // backwards: goLive moves the last one here
		p := list[i]
		if p.id != 0 {
			continue // waiting: its answer covers f
		}
		if f.Kind != KindDelta {
			s.enqueue(p.c, f)
			continue
		}
		if f.Seq > p.upTo {
			s.enqueue(p.c, f)
			p.upTo = f.Seq
		}
		if subs.feed.seen >= p.upTo {
			s.goLive(p)
		}
	}
}

// noteLost runs after subs' live connections were given `resync` for reason: a waiting
// subscription asks again (what it will be given must cover the loss), one catching up
// is resynced like the others.
func (s *Shard) noteLost(subs *Subscribers, reason bus.ResyncReason) {
	subs.feed.seen = 0
	list := subs.feed.pending
	for i := len(list) - 1; i >= 0; i-- {
		p := list[i]
		switch {
		case p.id == 0:
			s.resyncConn(p.c, subs.match, reason)
			s.goLive(p)
		case p.tries >= maxRecoveryTries:
			delete(s.rec.reqs, p.id)
			p.id = 0
			s.finishPending(p, RecoveryError)
		default:
			delete(s.rec.reqs, p.id)
			s.request(p)
		}
	}
}

// sweepRecoveries answers `recovered:false` to the waits past their deadline.
func (s *Shard) sweepRecoveries(now int64) {
	if len(s.rec.reqs) == 0 || now < s.rec.nextSweep {
		return
	}
	s.rec.nextSweep = now + int64(recoverySweep)
	var late []*pendingSub
	for _, p := range s.rec.reqs {
		if now >= p.deadline {
			late = append(late, p)
		}
	}
	for _, p := range late {
		s.finishPending(p, RecoveryTimeout)
	}
	if len(late) > 0 {
		s.flushDirty()
	}
}
