package redis

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"crease/bus"
)

// reassertFor is how long after its last delta a match is still re-asserted: past the
// end of any innings break or rain delay, not forever for a process that published a
// match last week.
const reassertFor = time.Hour

// published is a publisher's last acknowledged delta of one match, as the script's keys
// and arguments (immutable strings: nothing the caller reuses is kept). mu serialises
// the publishes of the match with the re-assertion of its last delta, so that a re-run
// of delta N never races delta N+1.
type published struct {
	mu    sync.Mutex
	match string
	keys  []string
	args  []string // args[7], the retry flag, is "1": a re-run of an applied delta is a duplicate
	at    time.Time
	gone  bool // refused by the store (another publisher or epoch owns it): not re-asserted
}

// reasserter holds the last delta of each match this bus published.
type reasserter struct {
	mu      sync.Mutex
	matches map[string]*published
}

// slot returns the match's entry, locked; the caller unlocks it.
func (r *reasserter) slot(match string) *published {
	r.mu.Lock()
	p := r.matches[match]
	if p == nil {
		if r.matches == nil {
			r.matches = make(map[string]*published)
		}
		p = &published{match: match}
		r.matches[match] = p
	}
	r.mu.Unlock()
	p.mu.Lock()
	return p
}

// acked records the script's keys and arguments of a delta the store applied (or held
// already); the caller holds p.mu.
func (p *published) acked(keys, args []string, now time.Time) {
	p.keys = keys
	p.args = append(p.args[:0], args...)
	p.args[7] = "1"
	p.at = now
	p.gone = false
}

// idle lists the matches whose last delta is older than every but younger than
// reassertFor.
func (r *reasserter) idle(now time.Time, every time.Duration) []*published {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*published
	for m, p := range r.matches {
		if !p.mu.TryLock() {
			continue // a publish is in flight: it re-asserts the match by itself
		}
		switch age := now.Sub(p.at); {
		case p.args == nil:
		case age > reassertFor || p.gone:
			delete(r.matches, m)
		case age >= every:
			out = append(out, p)
			continue // still locked: reassert unlocks it
		}
		p.mu.Unlock()
	}
	return out
}

// reassertLoop runs the last delta of every idle match again, every Options.Reassert.
// A store that still holds it answers `duplicate` and nothing is written or published;
// a store that lost it (a failover to a replica that lacked the last write, a split
// brain, FLUSHALL) gets it back, with its frame published again (gateways that had it
// drop the duplicate). Without this a lost final delta would leave every gateway that
// delivered it answering 503 for the snapshot until the publisher's next delta, which
// after the last ball of a match never comes.
func (b *Bus) reassertLoop() {
	defer b.wg.Done()
	every := b.opts.Reassert
	if every < 0 {
		return
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			for _, p := range b.pub.idle(now, every) {
				b.reassert(p)
				p.mu.Unlock()
			}
		}
	}
}

// reassert runs one match's last delta again; the caller holds p.mu.
func (b *Bus) reassert(p *published) {
	c := b.cli()
	if c == nil || !b.ready.Load() {
		return // the link is down: the next tick tries again
	}
	// Not the period: a short one (tests) could end a run Redis applies, leaving the
	// restore uncounted and unlogged (the next run would find it a duplicate).
	ctx, cancel := context.WithTimeout(b.ctx, max(b.opts.Reassert, 5*time.Second))
	defer cancel()
	match, seq := p.match, p.args[1]
	rule, err := b.script.Exec(ctx, c, p.keys, p.args).ToString()
	if err == nil {
		if res := bus.PublishResult(rule); res != bus.ResultDuplicate {
			b.m.publishes.WithLabelValues(rule).Inc()
			b.log.Warn("redis had lost the publisher's last delta of the match: published it again", "match", match, "epoch", p.args[0], "seq", seq, "rule", rule)
		}
		p.at = time.Now()
		return
	}
	if re, ok := rueidis.IsRedisErr(err); ok && (strings.HasPrefix(re.Error(), "SEQCONFLICT") || strings.HasPrefix(re.Error(), "NEEDJOURNAL")) {
		// Another publisher moved the match on, or the store lost more than the last
		// delta and its journal with it (only the next publish, which sends the whole
		// journal, can re-seed that): not this re-run's to fix.
		b.log.Info("not re-asserting the match: the store moved past this publisher", "match", match, "seq", seq, "err", re.Error())
		p.gone = true
		return
	}
	b.log.Debug("re-asserting the last delta failed; trying again", "match", match, "seq", seq, "err", err)
}
