package ingest

import (
	"fmt"
	"strconv"
	"strings"

	"crease/bus"
)

// Phases of the engine.
const (
	phaseScheduled = iota
	phaseStart
	phaseBall
	phaseEnd
	phaseDone
)

// engine scores a match one step at a time into st. Everything it reads was validated by
// ReadMatch, so it does not fail.
type engine struct {
	live bool // fed ball by ball (Live): no delivery to look ahead to
	// trusted: rebuilding what a store holds; the rules of impossible.go do not apply
	trusted bool
	m       *Match
	st      State
	phase   int
	inn     int // index of the current innings
	oi      int // position of the next delivery: over, ball
	bi      int
	w       innWork
}

// innWork is the scorer's scratch state of the current innings.
type innWork struct {
	card         *InningsCard
	target       int // 0: not a chase
	maxBalls     int // 0: no limit
	reached      bool
	overNo       int
	overStarted  bool
	overLegal    int
	overBowler   string
	overMixed    bool // more than one bowler in this over: no maiden
	overConceded int
	batPos       int
	bowlPos      int
	limit        int // legal balls of the innings; 0: no limit
	maxWickets   int
	out          map[string]bool // dismissed in this innings
}

// stepInfo describes one step for its delta and commentary.
type stepInfo struct {
	prio bus.Prio
	text string
	last bool // the match is over
}

func newEngine(m *Match) *engine {
	return &engine{m: m}
}

func (e *engine) done() bool { return e.phase == phaseDone }

func (e *engine) step() stepInfo {
	switch e.phase {
	case phaseScheduled:
		e.st = e.m.initialState()
		e.phase = phaseStart
		if len(e.m.innings) == 0 {
			e.phase = phaseEnd
		}
		text := e.st.Title
		if e.st.Toss != "" {
			text += ": " + e.st.Toss
		}
		return stepInfo{prio: bus.PrioNormal, text: text}
	case phaseStart:
		info := e.startInnings()
		e.oi, e.bi = 0, 0
		e.phase = phaseBall
		if e.m.innings[e.inn].n == 0 {
			e.phase = phaseEnd
		}
		return info
	case phaseBall:
		inn := e.m.innings[e.inn]
		d := &inn.overs[e.oi][e.bi]
		e.bi++
		if e.bi == len(inn.overs[e.oi]) {
			e.oi, e.bi = e.oi+1, 0
		}
		var next *delivery
		if e.oi < len(inn.overs) {
			next = &inn.overs[e.oi][e.bi]
		} else {
			e.phase = phaseEnd
		}
		return e.ball(d, next)
	case phaseEnd:
		return e.endInnings()
	}
	return stepInfo{prio: bus.PrioNormal}
}

func (e *engine) other(team string) string {
	if t := e.m.info.Teams; team == t[0] {
		return t[1]
	}
	return e.m.info.Teams[0]
}

func (e *engine) startInnings() stepInfo {
	m, st := e.m, &e.st
	inn := m.innings[e.inn]
	card := &InningsCard{
		Team:      inn.Team,
		Overs:     "0.0",
		SuperOver: inn.SuperOver,
		Batters:   map[string]*BatterCard{},
		Bowlers:   map[string]*BowlerCard{},
		FOW:       []FallOfWicket{},
	}
	if p := inn.PenaltyRuns.Pre; p > 0 {
		card.Runs, card.Extras.Penalty, card.Extras.Total = p, p, p
	}
	st.Innings[strconv.Itoa(e.inn+1)] = card
	e.w = innWork{card: card, out: map[string]bool{}, maxWickets: 10}
	e.w.target, e.w.maxBalls = e.chase()
	e.w.limit = m.oversLimit() * m.bpo
	if inn.SuperOver {
		e.w.limit, e.w.maxWickets = m.bpo, 2
	}
	if e.w.maxBalls > 0 {
		e.w.limit = e.w.maxBalls
	}
	card.Target = e.w.target
	if t := inn.Target; t != nil && t.Overs > 0 && e.w.maxBalls > 0 && e.w.maxBalls < m.oversLimit()*m.bpo && !inn.SuperOver {
		card.MaxOvers = ballsToOvers(e.w.maxBalls, m.bpo)
	}
	st.Note = ""
	st.Status = StatusLive
	st.Inn = e.inn + 1
	st.Batting, st.Bowling = inn.Team, e.other(inn.Team)
	st.Over, st.CRR = "0.0", 0
	st.Last6 = []string{}
	st.Partnership = Partnership{}
	st.Striker, st.NonStriker, st.Bowler = "", "", ""
	var text string
	if inn.n > 0 {
		d := &inn.overs[0][0]
		st.Striker, st.NonStriker, st.Bowler = d.Batter, d.NonStriker, d.Bowler
		e.batter(d.Batter)
		e.batter(d.NonStriker)
		text = fmt.Sprintf("%s and %s open for %s, %s to bowl", d.Batter, d.NonStriker, inn.Team, d.Bowler)
	} else {
		text = inn.Team + " innings"
		if inn.Forfeited {
			text += " forfeited"
		}
	}
	if inn.SuperOver {
		text = "Super over: " + text
	}
	if e.w.target > 0 {
		text += fmt.Sprintf("; %s need %d to win", inn.Team, e.w.target-card.Runs)
		if e.w.maxBalls > 0 {
			text += " from " + plural(e.w.maxBalls, "ball")
		}
	}
	e.score()
	return stepInfo{prio: bus.PrioNormal, text: text}
}

// chase returns the target of the current innings and its balls limit, from the file's
// target when it has one (D/L targets) or from the innings already played.
func (e *engine) chase() (target, maxBalls int) {
	m, i := e.m, e.inn
	inn := m.innings[i]
	limit := m.info.Overs * m.bpo
	if inn.SuperOver {
		limit = m.bpo
	}
	if t := inn.Target; t != nil {
		if t.Overs > 0 {
			limit, _ = oversToBalls(t.Overs, m.bpo)
		}
		return t.Runs, limit
	}
	card := func(j int) *InningsCard { return e.st.Innings[strconv.Itoa(j+1)] }
	switch {
	case inn.SuperOver:
		supers := 0
		for j := 0; j < i; j++ {
			if m.innings[j].SuperOver {
				supers++
			}
		}
		if supers%2 == 1 && m.innings[i-1].SuperOver {
			return card(i-1).Runs + 1, limit
		}
	case i == 1 && m.info.Overs > 0 && !m.innings[0].SuperOver:
		return card(0).Runs + 1, limit
	case i == 3 && m.info.Overs == 0:
		// The fourth innings of a two-innings match: the lead to overhaul.
		own, opp := 0, 0
		for j := 0; j < 3; j++ {
			if m.innings[j].Team == inn.Team {
				own += card(j).Runs
			} else {
				opp += card(j).Runs
			}
		}
		if t := opp - own + 1; t > 0 {
			return t, 0
		}
	}
	return 0, 0
}

// batter returns the card of a batter, adding it at the next position; a batter who
// retired hurt and comes back is not out again.
func (e *engine) batter(name string) *BatterCard {
	return cardOf(e.w.card.Batters, &e.w.batPos, name, func(pos int) *BatterCard {
		return &BatterCard{Pos: pos, Out: "not out"}
	})
}

func (e *engine) bowler(name string) *BowlerCard {
	return cardOf(e.w.card.Bowlers, &e.w.bowlPos, name, func(pos int) *BowlerCard {
		return &BowlerCard{Pos: pos, Overs: "0.0"}
	})
}

// cardOf returns the card of name in cards, adding a fresh one at the next position.
func cardOf[C any](cards map[string]*C, pos *int, name string, fresh func(pos int) *C) *C {
	c := cards[name]
	if c == nil {
		*pos++
		c = fresh(*pos)
		cards[name] = c
	}
	return c
}

func (e *engine) ball(d *delivery, next *delivery) stepInfo {
	w, st, bpo := &e.w, &e.st, e.m.bpo
	card := w.card
	if !w.overStarted || d.over != w.overNo {
		w.overStarted, w.overNo, w.overLegal = true, d.over, 0
		w.overBowler, w.overMixed, w.overConceded = d.Bowler, false, 0
	}
	if d.Bowler != w.overBowler {
		w.overMixed = true
	}
	bat := e.batter(d.Batter)
	if bat.Out != "not out" {
		bat.Out = "not out" // back after retiring hurt
	}
	if ns := e.batter(d.NonStriker); ns.Out != "not out" {
		ns.Out = "not out"
	}
	bowl := e.bowler(d.Bowler)
	r, x := d.Runs, d.Extras
	prio := bus.PrioNormal
	bowl.Wides += x.Wides
	if x.Noballs > 0 {
		bowl.Noballs++
	}

	card.Runs += r.Total
	card.Extras.Total += r.Extras
	card.Extras.Wides += x.Wides
	card.Extras.Noballs += x.Noballs
	card.Extras.Byes += x.Byes
	card.Extras.Legbyes += x.Legbyes
	card.Extras.Penalty += x.Penalty
	if d.legal() {
		card.Balls++
		bowl.Balls++
		w.overLegal++
		st.Partnership.Balls++
	}
	if !d.wide() {
		bat.Balls++
	}
	before := bat.Runs
	bat.Runs += r.Batter
	boundary := ""
	if !r.NonBoundary {
		switch r.Batter {
		case 4:
			bat.Fours++
			boundary = "FOUR"
		case 6:
			bat.Sixes++
			boundary = "SIX"
		}
	}
	if boundary != "" {
		prio = bus.PrioHigh
	}
	conceded := r.Total - x.Byes - x.Legbyes - x.Penalty
	bowl.Runs += conceded
	w.overConceded += conceded
	if d.legal() && w.overLegal == bpo && !w.overMixed && w.overConceded == 0 {
		bowl.Maidens++
	}
	bowl.Overs = ballsToOvers(bowl.Balls, bpo)
	card.Overs = ballsToOvers(card.Balls, bpo)
	st.Partnership.Runs += r.Total
	st.Over = strconv.Itoa(d.over) + "." + strconv.Itoa(w.overLegal)

	// Commentary: "Nawaz to Ashwin, 1 run (wide)".
	var parts []string
	switch {
	case len(d.Wickets) > 0 && r.Total == 0:
	case boundary != "":
		parts = append(parts, boundary+extrasNote(x))
	case r.Total == 0:
		parts = append(parts, "no run"+extrasNote(x))
	default:
		parts = append(parts, plural(r.Total, "run")+extrasNote(x))
	}
	out := map[string]bool{}
	for _, wk := range d.Wickets {
		k := dismissals[wk.Kind]
		c := e.batter(wk.PlayerOut)
		c.Out = outText(wk, d.Bowler)
		prio = bus.PrioHigh
		if k.team {
			w.out[wk.PlayerOut] = true
			card.Wickets++
			card.FOW = append(card.FOW, FallOfWicket{Wicket: card.Wickets, Runs: card.Runs, Over: st.Over, Player: wk.PlayerOut})
			parts = append(parts, "OUT! "+wk.PlayerOut+" "+c.Out)
		} else {
			parts = append(parts, wk.PlayerOut+" "+c.Out)
		}
		if k.bowler {
			bowl.Wickets++
		}
		out[wk.PlayerOut] = true
		st.Partnership = Partnership{}
	}
	if m := milestone(before, bat.Runs); m > 0 {
		prio = bus.PrioHigh
		parts = append(parts, fmt.Sprintf("%s reaches %d off %s", d.Batter, m, plural(bat.Balls, "ball")))
	}
	for _, rp := range d.Replacements.Match {
		p := rp.In + " in for " + rp.Out
		if rp.Reason != "" {
			p += " (" + strings.ReplaceAll(rp.Reason, "_", " ") + ")"
		}
		parts = append(parts, p)
	}

	// Who faces next: the next delivery says it (strike rotation, the new batter); after
	// the last ball, whoever is still in.
	if next != nil {
		st.Striker, st.NonStriker = next.Batter, next.NonStriker
		e.batter(next.Batter)
		e.batter(next.NonStriker)
	} else {
		st.Striker, st.NonStriker = d.Batter, d.NonStriker
		if e.live {
			// Fed ball by ball, nobody says who faces next: rotate as the laws do (runs
			// run, and the end of an over); the next ball corrects it if need be.
			ran := r.Batter + x.Byes + x.Legbyes
			if x.Wides > 0 {
				ran = x.Wides - 1
			}
			if ran%2 == 1 {
				st.Striker, st.NonStriker = st.NonStriker, st.Striker
			}
			if d.legal() && w.overLegal == bpo {
				st.Striker, st.NonStriker = st.NonStriker, st.Striker
			}
		}
		if out[st.Striker] {
			st.Striker = ""
		}
		if out[st.NonStriker] {
			st.NonStriker = ""
		}
	}
	st.Bowler = d.Bowler

	st.Last6 = append(st.Last6, ballToken(d))
	if len(st.Last6) > 6 {
		st.Last6 = append([]string{}, st.Last6[len(st.Last6)-6:]...)
	}
	e.score()
	if w.target > 0 && !w.reached && card.Runs >= w.target {
		w.reached = true
		prio = bus.PrioHigh
		parts = append(parts, "target reached")
	}
	text := short(d.Bowler) + " to " + short(d.Batter) + ", " + strings.Join(parts, "; ")
	return stepInfo{prio: prio, text: text}
}

// score copies the current innings' totals to the top of the state.
func (e *engine) score() {
	w, st, bpo := &e.w, &e.st, e.m.bpo
	st.Score = Score{Runs: w.card.Runs, Wickets: w.card.Wickets}
	st.CRR = 0
	if w.card.Balls > 0 {
		st.CRR = round2(float64(w.card.Runs) * float64(bpo) / float64(w.card.Balls))
	}
	st.Target, st.Need, st.RRR = 0, nil, nil
	if w.target == 0 {
		return
	}
	st.Target = w.target
	need := max(w.target-w.card.Runs, 0)
	st.Need = &Need{Runs: need}
	if w.maxBalls == 0 {
		return
	}
	left := max(w.maxBalls-w.card.Balls, 0)
	st.Need.Balls = &left
	switch {
	case need == 0:
		z := 0.0
		st.RRR = &z
	case left > 0:
		r := round2(float64(need) * float64(bpo) / float64(left))
		st.RRR = &r
	}
}

func (e *engine) endInnings() stepInfo {
	st, w := &e.st, &e.w
	var text string
	if len(e.m.innings) > 0 {
		inn := e.m.innings[e.inn]
		if p := inn.PenaltyRuns.Post; p > 0 {
			w.card.Runs += p
			w.card.Extras.Penalty += p
			w.card.Extras.Total += p
		}
		e.score()
		// The innings is over: nothing is needed from it any more ("need 1 from 0
		// balls" after a tie is not a scorecard); the target stays on its card.
		st.Need, st.RRR = nil, nil
		st.Over = w.card.Overs
		st.Striker, st.NonStriker, st.Bowler = "", "", ""
		w.card.DidNotBat = e.didNotBat(w.card)
		text = fmt.Sprintf("End of innings: %s %d/%d (%s ov)", w.card.Team, w.card.Runs, w.card.Wickets, w.card.Overs)
		if inn.Declared {
			text += ", declared"
		}
	}
	if e.inn+1 < len(e.m.innings) {
		st.Status = StatusInningsBreak
		if w.target > 0 && w.card.Runs == w.target-1 && e.m.innings[e.inn+1].SuperOver {
			st.Note = "Scores level — super over"
			text += ". " + st.Note
		}
		e.inn++
		e.phase = phaseStart
		return stepInfo{prio: bus.PrioHigh, text: text}
	}
	st.Status = StatusFinished
	st.Note = ""
	st.Result, st.Winner = resultText(&e.m.info)
	st.Method = e.m.info.Outcome.Method
	st.PlayerOfMatch = append([]string(nil), e.m.info.PlayerOfMatch...)
	e.phase = phaseDone
	if text != "" {
		text += ". "
	}
	return stepInfo{prio: bus.PrioHigh, text: text + st.Result, last: true}
}

// didNotBat lists, in the order of the team sheet, the players of the batting side who
// never came in; nil when the data has no team sheet.
func (e *engine) didNotBat(card *InningsCard) []string {
	var out []string
	for _, p := range e.m.info.Players[card.Team] {
		if _, ok := card.Batters[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

// peek returns the delivery the next step scores, or nil when it scores none.
func (e *engine) peek() (*delivery, int) {
	if e.phase != phaseBall {
		return nil, 0
	}
	return &e.m.innings[e.inn].overs[e.oi][e.bi], e.bi
}
