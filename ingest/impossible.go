package ingest

import (
	"fmt"
	"strconv"
)

// What the scorer refuses as impossible while it plays a match forward: a delivery that
// cannot come next, an innings the format does not have, an outcome the innings
// contradict. Each says why in the words of the game; the callers wrap it as
// ErrImpossible (the publish API's 400) or a match file's *Error. A trusted engine (a
// match rebuilt from the journal its store holds, NewLiveFromJournal) refuses none of
// them: the store took every entry once, and a rule added since must not make a stored
// match unreadable.

// implausible says why the delivery d cannot come next in the current innings, or "":
// after the innings was all out, a wicket too many, a ball past the innings' overs, a
// delivery after the target was reached, a dismissed batter batting again.
func (e *engine) implausible(d *delivery) string {
	if e.trusted {
		return ""
	}
	w, bpo := &e.w, e.m.bpo
	wk := 0
	for _, x := range d.Wickets {
		if dismissals[x.Kind].team {
			wk++
		}
	}
	switch {
	case w.card.Wickets >= w.maxWickets:
		return fmt.Sprintf("a delivery after the innings was all out (%d wickets)", w.card.Wickets)
	case w.card.Wickets+wk > w.maxWickets:
		return fmt.Sprintf("wicket %d of an innings that has only %d", w.card.Wickets+wk, w.maxWickets)
	case w.limit > 0 && d.over >= (w.limit+bpo-1)/bpo:
		return fmt.Sprintf("over %d is past the innings' %s overs", d.over, ballsToOvers(w.limit, bpo))
	case w.limit > 0 && w.card.Balls >= w.limit:
		return fmt.Sprintf("a delivery after the innings' %s overs were bowled", ballsToOvers(w.limit, bpo))
	case w.target > 0 && w.reached:
		return fmt.Sprintf("a delivery after the target of %d was reached", w.target)
	case d.legal() && w.overStarted && d.over == w.overNo && w.overLegal >= bpo+1:
		// Umpires miscount: real overs of bpo+1 legal balls exist (Cricsheet's
		// miscounted_overs records 7-ball overs), so bpo+1 is the strictest bound.
		return fmt.Sprintf("legal ball %d of over %d: an over has %d legal balls (%d when the umpire miscounts)", w.overLegal+1, d.over, bpo, bpo+1)
	}
	for _, p := range []string{d.Batter, d.NonStriker} {
		if w.out[p] {
			return fmt.Sprintf("%q bats again after being dismissed", p)
		}
	}
	return ""
}

// cannotOpen says why innings i (0-based), next, cannot follow the innings before it, or
// "": a limited-overs match has two innings, then super overs (in pairs, each only after
// the two innings or a tied pair); a match without an overs limit up to four and no
// super over; no innings follows a chase that reached its target (the match was won).
// e.w is still the previous innings' work.
func (e *engine) cannotOpen(i int, next *innings) string {
	if e.trusted {
		return ""
	}
	m := e.m
	regular, supers := 0, 0
	for _, p := range m.innings[:i] {
		if p.SuperOver {
			supers++
		} else {
			regular++
		}
	}
	limited := m.oversLimit() > 0
	multiDay := m.info.MatchType == "Test" || m.info.MatchType == "MDM"
	switch {
	case i > 0 && e.w.target > 0 && e.w.reached:
		return fmt.Sprintf("innings %d after innings %d reached its target of %d: the match was won", i+1, i, e.w.target)
	case next.SuperOver && (multiDay || !limited && m.info.MatchType != ""):
		return fmt.Sprintf("a super over in a %s match, which has no overs limit", m.info.MatchType)
	case next.SuperOver && regular != 2:
		return fmt.Sprintf("a super over as innings %d: super overs follow the match's two innings", i+1)
	case !next.SuperOver && supers > 0:
		return fmt.Sprintf("innings %d is not a super over, but a super over was played", i+1)
	case !next.SuperOver && limited && regular >= 2:
		return fmt.Sprintf("a third innings in a limited-overs match (%d overs): it has two, then super overs", m.oversLimit())
	case !next.SuperOver && regular >= 4:
		return "a fifth innings: a match has at most four"
	}
	return ""
}

// outcomeImpossible says why the info's outcome contradicts the innings scored, or "".
// Only what is certain: a win by wickets is the side that batted last (with wickets in
// hand: by + fallen <= 10), a win by runs (or by an innings and runs) the side that did
// not. A match with a super over is not checked (Cricsheet names its winner with the
// eliminator, and how the by reads then is not the innings'); a winner without by (an
// awarded match, a bowl-out), a tie, a draw or no result neither, nor a result by a
// method (D/L, DLS, VJD...): a chasing side ahead of par when play is called off wins
// "by runs" (Sri Lanka v New Zealand, Pallekele 2012: by 14 runs, D/L).
func (e *engine) outcomeImpossible() string {
	m := e.m
	o := &m.info.Outcome
	if e.trusted || o.Winner == "" || o.By.Wickets == 0 && o.By.Runs == 0 || o.Method != "" {
		return ""
	}
	last := -1
	for i, inn := range m.innings {
		if inn.SuperOver {
			return ""
		}
		last = i
	}
	if last < 0 {
		return fmt.Sprintf("info.outcome: %s won by %s, but nobody batted", o.Winner, byText(o.By))
	}
	team := m.innings[last].Team
	switch {
	case o.By.Wickets > 0 && team != o.Winner:
		return fmt.Sprintf("info.outcome: %s won by %s, but %s batted last", o.Winner, byText(o.By), team)
	case o.By.Wickets > 0:
		if c := e.st.Innings[strconv.Itoa(last+1)]; c != nil && c.Wickets+o.By.Wickets > 10 {
			return fmt.Sprintf("info.outcome: %s won by %s, but lost %d in the last innings (at most %d left)", o.Winner, byText(o.By), c.Wickets, 10-c.Wickets)
		}
	case o.By.Runs > 0 && team == o.Winner:
		return fmt.Sprintf("info.outcome: %s won by %s, but batted last (a win by runs is the side that bowled last)", o.Winner, byText(o.By))
	}
	return ""
}

func byText(b csBy) string {
	switch {
	case b.Wickets > 0:
		return plural(b.Wickets, "wicket")
	case b.Innings > 0:
		return "an innings and " + plural(b.Runs, "run")
	}
	return plural(b.Runs, "run")
}
