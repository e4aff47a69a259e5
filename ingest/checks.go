package ingest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

func (m *Match) checkInfo() error { return m.checkInfoOf(false) }

// checkInfoOf checks the info; a live match (fed ball by ball) may have no outcome yet.
func (m *Match) checkInfoOf(live bool) error {
	in := &m.info
	if len(in.Teams) != 2 || in.Teams[0] == "" || in.Teams[1] == "" || in.Teams[0] == in.Teams[1] {
		return m.errf("info.teams %q is not two different teams", in.Teams)
	}
	m.bpo = in.BallsPerOver
	if m.bpo == 0 {
		m.bpo = 6 // files before balls_per_over existed were all six-ball overs
	}
	if m.bpo < 1 || m.bpo > maxBallsPerOver {
		return m.errf("info.balls_per_over %d is out of range 1..%d", in.BallsPerOver, maxBallsPerOver)
	}
	if in.Overs < 0 || in.Overs > 1000 {
		return m.errf("info.overs %d is out of range", in.Overs)
	}
	if max, ok := formatOvers[in.MatchType]; ok && in.Overs > max {
		return m.errf("info.overs %d is more than a %s has (%d)", in.Overs, in.MatchType, max)
	}
	o := &in.Outcome
	isTeam := func(s string) bool { return s == in.Teams[0] || s == in.Teams[1] }
	switch o.Result {
	case "", "tie", "no result", "draw":
	default:
		return m.errf("info.outcome.result %q is not tie, no result or draw", o.Result)
	}
	if o.Winner != "" && !isTeam(o.Winner) {
		return m.errf("info.outcome.winner %q is not one of the teams", o.Winner)
	}
	if o.Winner != "" && o.Result != "" {
		return m.errf("info.outcome has both a winner and result %q", o.Result)
	}
	if o.Winner == "" && o.Result == "" && !live {
		return m.errf("info.outcome has neither a winner nor a result")
	}
	for _, s := range []string{o.Eliminator, o.BowlOut} {
		if s != "" && !isTeam(s) {
			return m.errf("info.outcome: %q is not one of the teams", s)
		}
	}
	if o.By.Runs < 0 || o.By.Wickets < 0 || o.By.Innings < 0 || o.By.Wickets > 10 {
		return m.errf("info.outcome.by %+v is impossible", o.By)
	}
	if t := in.Toss.Winner; t != "" && !isTeam(t) {
		return m.errf("info.toss.winner %q is not one of the teams", t)
	}
	switch in.Toss.Decision {
	case "", "bat", "field":
	default:
		return m.errf("info.toss.decision %q is not bat or field", in.Toss.Decision)
	}
	return nil
}

// checkDelivery validates what one delivery can say about itself; "" when it is sound.
func checkDelivery(d *csDelivery) string {
	switch {
	case d.Batter == "":
		return "no batter"
	case d.NonStriker == "":
		return "no non_striker"
	case d.Bowler == "":
		return "no bowler"
	case d.Batter == d.NonStriker:
		return fmt.Sprintf("batter %q is also the non_striker", d.Batter)
	}
	r, x := d.Runs, d.Extras
	for _, v := range []struct {
		name string
		n    int
		max  int
		what string
	}{
		{"runs.batter", r.Batter, maxBatRuns, "runs off the bat on one ball: all run plus overthrows"},
		{"runs.extras", r.Extras, maxRunsPerBall, "runs on one ball"},
		{"runs.total", r.Total, maxRunsPerBall, "runs on one ball"},
		{"extras.wides", x.Wides, maxExtraRuns, "on one ball"},
		{"extras.noballs", x.Noballs, maxExtraRuns, "on one ball"},
		{"extras.byes", x.Byes, maxExtraRuns, "on one ball"},
		{"extras.legbyes", x.Legbyes, maxExtraRuns, "on one ball"},
		{"extras.penalty", x.Penalty, maxPenaltyRuns, "two 5-run awards"},
	} {
		if v.n < 0 {
			return fmt.Sprintf("%s %d is negative", v.name, v.n)
		}
		if v.n > v.max {
			return fmt.Sprintf("%s %d is more than %d (%s)", v.name, v.n, v.max, v.what)
		}
	}
	if r.Total != r.Batter+r.Extras {
		return fmt.Sprintf("runs.total %d != batter %d + extras %d", r.Total, r.Batter, r.Extras)
	}
	if sum := x.Wides + x.Noballs + x.Byes + x.Legbyes + x.Penalty; sum != r.Extras {
		return fmt.Sprintf("runs.extras %d != the sum of extras %d", r.Extras, sum)
	}
	if x.Wides > 0 && x.Noballs > 0 {
		return "a delivery cannot be both a wide and a no-ball"
	}
	if x.Wides > 0 && (r.Batter > 0 || x.Byes > 0 || x.Legbyes > 0) {
		return "runs off a wide are all wides"
	}
	if x.Byes > 0 && x.Legbyes > 0 {
		return "a delivery cannot give both byes and leg byes"
	}
	if len(d.Wickets) > maxWicketsPerDel {
		return fmt.Sprintf("%d wickets on one delivery", len(d.Wickets))
	}
	for i, w := range d.Wickets {
		k, ok := dismissals[w.Kind]
		if !ok {
			return fmt.Sprintf("wicket kind %q is unknown", w.Kind)
		}
		if w.PlayerOut == "" {
			return "wicket without player_out"
		}
		if k.crease && w.PlayerOut != d.Batter && w.PlayerOut != d.NonStriker {
			return fmt.Sprintf("%s of %q, who is not at the crease", w.Kind, w.PlayerOut)
		}
		if i > 0 && d.Wickets[0].PlayerOut == w.PlayerOut {
			return fmt.Sprintf("%q is out twice on one delivery", w.PlayerOut)
		}
		for _, f := range w.Fielders {
			if f.Name == "" && !f.Substitute {
				return "fielder without a name"
			}
		}
		if w.Kind == kindStumped && x.Noballs > 0 {
			return "stumped off a no-ball"
		}
		if x.Noballs > 0 && (w.Kind == kindBowled || w.Kind == kindLBW || w.Kind == kindCaught || w.Kind == kindCaughtBowled || w.Kind == kindHitWicket) {
			return fmt.Sprintf("%s off a no-ball", w.Kind)
		}
		if x.Wides > 0 && (w.Kind == kindBowled || w.Kind == kindLBW || w.Kind == kindCaught || w.Kind == kindCaughtBowled) {
			return fmt.Sprintf("%s off a wide", w.Kind)
		}
	}
	// The ball is dead once a batter is dismissed in play, so at most one dismissal of a
	// delivery is one in play; the other may only be a retirement or timed out, which
	// happen between balls and are recorded on the delivery before.
	var inPlay []string
	for _, w := range d.Wickets {
		if dismissals[w.Kind].crease {
			inPlay = append(inPlay, w.Kind+" of "+strconv.Quote(w.PlayerOut))
		}
	}
	if len(inPlay) > 1 {
		return fmt.Sprintf("two dismissals in play on one delivery (%s): the ball is dead after the first; only a retirement or timed out may be recorded with it", strings.Join(inPlay, " and "))
	}
	for _, rp := range append(append([]csReplacement(nil), d.Replacements.Match...), d.Replacements.Role...) {
		if rp.In == "" || rp.Out == "" {
			return "replacement without in and out"
		}
	}
	return ""
}

// checkPlay follows who is at the crease through each innings: a dismissed batter may not
// bat again (retired hurt and retired not out may come back).
func (m *Match) checkPlay() error {
	for n, inn := range m.innings {
		out := map[string]string{} // player -> where dismissed
		for _, ds := range inn.overs {
			for bi := range ds {
				d := &ds[bi]
				at := func(format string, a ...any) error {
					return &Error{File: m.file, Innings: n + 1, Over: d.over, Ball: bi + 1, HasOver: true, Msg: fmt.Sprintf(format, a...)}
				}
				for _, p := range []string{d.Batter, d.NonStriker} {
					if where, ok := out[p]; ok {
						return at("%q bats again after being dismissed at %s", p, where)
					}
				}
				for _, w := range d.Wickets {
					if where, ok := out[w.PlayerOut]; ok {
						return at("%q is out again after being dismissed at %s", w.PlayerOut, where)
					}
					if dismissals[w.Kind].team {
						out[w.PlayerOut] = fmt.Sprintf("over %d, ball %d", d.over, bi+1)
					}
				}
			}
		}
	}
	return nil
}

// oversToBalls converts Cricsheet's overs notation (18.4: 18 overs and 4 balls) to balls.
func oversToBalls(overs float64, bpo int) (int, bool) {
	if overs < 0 || overs > 1e6 {
		return 0, false
	}
	whole := int(overs)
	balls := int((overs-float64(whole))*10 + 0.5)
	if balls >= bpo || math.Abs(float64(whole)+float64(balls)/10-overs) > 1e-9 {
		return 0, false
	}
	return whole*bpo + balls, true
}
