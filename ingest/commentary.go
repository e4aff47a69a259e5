package ingest

import (
	"math"
	"strconv"
	"strings"
)

// outText is the scorecard's dismissal: "c Rizwan b Rauf", "run out (Babar Azam)".
func outText(w csWicket, bowler string) string {
	fielders := make([]string, 0, len(w.Fielders))
	for _, f := range w.Fielders {
		name := f.Name
		if f.Substitute {
			name = "sub (" + name + ")"
			if f.Name == "" {
				name = "sub"
			}
		}
		fielders = append(fielders, name)
	}
	first := ""
	if len(fielders) > 0 {
		first = fielders[0]
	}
	// withFielder is "<how> <fielder> b <bowler>", or "<unnamed> b <bowler>" when the
	// data names no fielder.
	withFielder := func(how, unnamed string) string {
		if first == "" {
			return unnamed + " b " + bowler
		}
		return how + " " + first + " b " + bowler
	}
	switch w.Kind {
	case kindCaught:
		if first == bowler && len(w.Fielders) > 0 && !w.Fielders[0].Substitute {
			return "c & b " + bowler // caught by the bowler, as scorecards print it
		}
		return withFielder("c", "c ?")
	case kindCaughtBowled:
		return "c & b " + bowler
	case kindBowled:
		return "b " + bowler
	case kindLBW:
		return "lbw b " + bowler
	case kindStumped:
		return withFielder("st", "st")
	case kindHitWicket:
		return "hit wicket b " + bowler
	case kindRunOut:
		if len(fielders) == 0 {
			return "run out"
		}
		return "run out (" + strings.Join(fielders, "/") + ")"
	}
	return w.Kind // retired hurt, obstructing the field, timed out...
}

// ballToken is the compact notation of last6: "0", "4", "W", "1wd", "2lb", "1W".
func ballToken(d *delivery) string {
	r, x := d.Runs, d.Extras
	s := strconv.Itoa(r.Total)
	switch {
	case x.Wides > 0:
		s += "wd"
	case x.Noballs > 0:
		s += "nb"
	case x.Legbyes > 0:
		s += "lb"
	case x.Byes > 0:
		s += "b"
	case x.Penalty > 0:
		s += "p"
	}
	for _, w := range d.Wickets {
		if dismissals[w.Kind].team {
			if s == "0" {
				return "W"
			}
			return s + "W"
		}
	}
	return s
}

func extrasNote(x csExtras) string {
	var notes []string
	switch {
	case x.Wides > 0:
		notes = append(notes, "wide")
	case x.Noballs > 0:
		notes = append(notes, "no ball")
	}
	switch {
	case x.Byes > 0:
		notes = append(notes, "byes")
	case x.Legbyes > 0:
		notes = append(notes, "leg byes")
	}
	if x.Penalty > 0 {
		notes = append(notes, plural(x.Penalty, "penalty run"))
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, ", ") + ")"
}

// milestone returns the multiple of 50 crossed going from before to after runs, or 0.
func milestone(before, after int) int {
	if after/50 > before/50 {
		return after / 50 * 50
	}
	return 0
}

// short is the name a commentator uses: the last word ("R Ashwin" -> "Ashwin").
func short(name string) string {
	if i := strings.LastIndexByte(name, ' '); i >= 0 && i+1 < len(name) {
		return name[i+1:]
	}
	return name
}

func plural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + one + "s"
}

func ballsToOvers(balls, bpo int) string {
	return strconv.Itoa(balls/bpo) + "." + strconv.Itoa(balls%bpo)
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
