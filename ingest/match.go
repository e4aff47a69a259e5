package ingest

import (
	"strings"
)

// Match is a validated Cricsheet match, ready to be stepped through. It is immutable and
// safe to share between goroutines; every Stepper keeps its own scoring state.
type Match struct {
	id      string
	file    string
	info    csInfo
	bpo     int
	innings []*innings
	final   *State
}

// ID is the match id used on the bus.
func (m *Match) ID() string { return m.id }

// Title is "Team A v Team B".
func (m *Match) Title() string { return m.info.Teams[0] + " v " + m.info.Teams[1] }

// File is the name the match was read from.
func (m *Match) File() string { return m.file }

// Deliveries counts the deliveries of all innings.
func (m *Match) Deliveries() int {
	n := 0
	for _, inn := range m.innings {
		n += inn.n
	}
	return n
}

// Steps is the number of deltas of one play-through: the scheduled state, then per
// innings its start, its deliveries and its end (break or result).
func (m *Match) Steps() int {
	if len(m.innings) == 0 {
		return 2
	}
	return 1 + 2*len(m.innings) + m.Deliveries()
}

// Final returns a copy of the state at the end of the match.
func (m *Match) Final() *State { return m.final.clone() }

// withID returns a copy of m under another id (the scorer reads the id from the match).
func (m *Match) withID(id string) *Match {
	c := *m
	c.id = id
	c.final = m.final.clone()
	c.final.Match = id
	return &c
}

func (m *Match) initialState() State {
	in := &m.info
	st := State{
		Match:      m.id,
		Title:      m.Title(),
		OversLimit: m.oversLimit(),
		Event:      eventText(in),
		Venue:      in.Venue,
		Teams:      []string{in.Teams[0], in.Teams[1]},
		Toss:       tossText(in.Toss),
		Status:     StatusScheduled,
		Over:       "0.0",
		Last6:      []string{},
		Innings:    map[string]*InningsCard{},
	}
	if len(in.Dates) > 0 {
		st.Date = in.Dates[0]
	}
	return st
}

// formatOvers is the overs per innings of the limited-overs formats Cricsheet names.
var formatOvers = map[string]int{"T20": 20, "IT20": 20, "ODI": 50, "ODM": 50}

// oversLimit is the overs per innings: the file's, else its format's; 0 for none.
func (m *Match) oversLimit() int {
	if m.info.Overs > 0 {
		return m.info.Overs
	}
	return formatOvers[m.info.MatchType]
}

func eventText(in *csInfo) string {
	name := in.Event.Name
	if name == "" {
		return ""
	}
	if len(in.Dates) > 0 && len(in.Dates[0]) >= 4 {
		if y := in.Dates[0][:4]; !strings.Contains(name, y) {
			name += " " + y
		}
	}
	if n := strings.Trim(string(in.Event.MatchNumber), `"`); n != "" && n != "null" {
		name += ", match " + n
	} else if in.Event.Stage != "" {
		name += ", " + in.Event.Stage
	}
	return name
}

func tossText(t csToss) string {
	if t.Winner == "" {
		return ""
	}
	s := t.Winner + " won the toss"
	if t.Uncontested {
		s += " (uncontested)"
	}
	switch t.Decision {
	case "bat":
		s += " and chose to bat"
	case "field":
		s += " and chose to field"
	}
	return s
}

// resultText renders the outcome as a scorecard says it, and the winner (or "").
func resultText(in *csInfo) (string, string) {
	o := &in.Outcome
	method := ""
	if o.Method != "" {
		method = " (" + o.Method + " method)"
	}
	switch {
	case o.Winner != "":
		s := o.Winner + " won"
		switch {
		case o.By.Innings > 0:
			s += " by an innings and " + plural(o.By.Runs, "run")
		case o.By.Runs > 0:
			s += " by " + plural(o.By.Runs, "run")
		case o.By.Wickets > 0:
			s += " by " + plural(o.By.Wickets, "wicket")
		}
		return s + method, o.Winner
	case o.Result == "tie":
		switch {
		case o.Eliminator != "":
			return "Match tied (" + o.Eliminator + " won the super over)", o.Eliminator
		case o.BowlOut != "":
			return "Match tied (" + o.BowlOut + " won the bowl-out)", o.BowlOut
		}
		return "Match tied" + method, ""
	case o.Result == "draw":
		return "Match drawn", ""
	default:
		return "No result" + method, ""
	}
}
