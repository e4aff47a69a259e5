package ingest

import (
	"encoding/json"
	"slices"
)

// Match statuses.
const (
	StatusScheduled    = "scheduled"
	StatusLive         = "live"
	StatusInningsBreak = "innings_break"
	StatusFinished     = "finished"
)

// State is the scorecard the clients render: the `state` of a snapshot, and what the
// merge patches of `delta` frames change. Values that are "null" in the shared schema
// (result, winner, target, rrr, need, striker...) are left out instead: RFC 7396 cannot
// set a member to null (a null in a patch deletes it), so only absence survives a
// round trip through patches; `state.result == null` holds for both in JavaScript.
type State struct {
	Match         string                  `json:"match"`
	Title         string                  `json:"title"`
	OversLimit    int                     `json:"overs_limit,omitempty"` // the format's overs per innings; absent: no limit
	Event         string                  `json:"event,omitempty"`
	Venue         string                  `json:"venue,omitempty"`
	Date          string                  `json:"date,omitempty"`
	Teams         []string                `json:"teams"`
	Toss          string                  `json:"toss,omitempty"`
	Status        string                  `json:"status"`
	Inn           int                     `json:"inn"`
	Batting       string                  `json:"batting,omitempty"`
	Bowling       string                  `json:"bowling,omitempty"`
	Score         Score                   `json:"score"`
	Over          string                  `json:"over"`
	CRR           float64                 `json:"crr"`
	Target        int                     `json:"target,omitempty"`
	RRR           *float64                `json:"rrr,omitempty"`
	Need          *Need                   `json:"need,omitempty"`
	Striker       string                  `json:"striker,omitempty"`
	NonStriker    string                  `json:"non_striker,omitempty"`
	Bowler        string                  `json:"bowler,omitempty"`
	Last6         []string                `json:"last6"`
	Partnership   Partnership             `json:"partnership"`
	Innings       map[string]*InningsCard `json:"innings"`
	Note          string                  `json:"note,omitempty"` // "Scores level — super over" at such a break
	Result        string                  `json:"result,omitempty"`
	Winner        string                  `json:"winner,omitempty"`
	Method        string                  `json:"method,omitempty"`          // with the result: "D/L", "VJD"... when the data has it
	PlayerOfMatch []string                `json:"player_of_match,omitempty"` // with the result, when the data has it
}

// Score is runs for wickets.
type Score struct {
	Runs    int `json:"runs"`
	Wickets int `json:"wickets"`
}

// Need is what a chasing side still needs. Balls is absent when the innings has no limit.
type Need struct {
	Runs  int  `json:"runs"`
	Balls *int `json:"balls,omitempty"`
}

// Partnership is the current partnership: runs (extras included) and legal balls.
type Partnership struct {
	Runs  int `json:"runs"`
	Balls int `json:"balls"`
}

// InningsCard is the scorecard of one innings, keyed "1", "2"... in State.Innings.
type InningsCard struct {
	Team      string                 `json:"team"`
	Runs      int                    `json:"runs"`
	Wickets   int                    `json:"wickets"`
	Balls     int                    `json:"balls"`
	Overs     string                 `json:"overs"`
	SuperOver bool                   `json:"super_over"`
	Target    int                    `json:"target,omitempty"`      // a chase: the runs to reach, kept after the innings ends
	MaxOvers  string                 `json:"max_overs,omitempty"`   // the innings' overs when a revised target shortened it ("18.4")
	DidNotBat []string               `json:"did_not_bat,omitempty"` // at the end of the innings, when the data lists the players
	Extras    Extras                 `json:"extras"`
	Batters   map[string]*BatterCard `json:"batters"`
	Bowlers   map[string]*BowlerCard `json:"bowlers"`
	FOW       []FallOfWicket         `json:"fow"`
}

// Extras of an innings; Total includes penalty runs.
type Extras struct {
	Total   int `json:"total"`
	Wides   int `json:"wides"`
	Noballs int `json:"noballs"`
	Byes    int `json:"byes"`
	Legbyes int `json:"legbyes"`
	Penalty int `json:"penalty"`
}

// BatterCard is one batter's line. Out is "not out" while batting, else how they got out
// ("lbw b Arshdeep Singh", "retired hurt"...). Pos is the batting position (1-based).
type BatterCard struct {
	Pos   int    `json:"pos"`
	Runs  int    `json:"runs"`
	Balls int    `json:"balls"`
	Fours int    `json:"fours"`
	Sixes int    `json:"sixes"`
	Out   string `json:"out"`
}

// BowlerCard is one bowler's line. Balls are legal balls; Runs exclude byes, leg byes and
// penalties; Wickets exclude run outs, retirements and the like.
type BowlerCard struct {
	Pos     int    `json:"pos"`
	Balls   int    `json:"balls"`
	Overs   string `json:"overs"`
	Maidens int    `json:"maidens"`
	Runs    int    `json:"runs"`
	Wickets int    `json:"wickets"`
	Wides   int    `json:"wides"`   // runs from wides
	Noballs int    `json:"noballs"` // no-balls bowled
}

// FallOfWicket is one entry of an innings' fall of wickets.
type FallOfWicket struct {
	Wicket int    `json:"wicket"`
	Runs   int    `json:"runs"`
	Over   string `json:"over"`
	Player string `json:"player"`
}

// clone deep-copies s, so that a kept state is not changed by later steps.
func (s *State) clone() *State {
	c := *s
	c.Teams = slices.Clone(s.Teams)
	c.Last6 = slices.Clone(s.Last6)
	c.PlayerOfMatch = slices.Clone(s.PlayerOfMatch)
	if s.RRR != nil {
		v := *s.RRR
		c.RRR = &v
	}
	if s.Need != nil {
		n := *s.Need
		if n.Balls != nil {
			b := *n.Balls
			n.Balls = &b
		}
		c.Need = &n
	}
	c.Innings = make(map[string]*InningsCard, len(s.Innings))
	for k, v := range s.Innings {
		ic := *v
		ic.FOW = slices.Clone(v.FOW)
		ic.DidNotBat = slices.Clone(v.DidNotBat)
		ic.Batters = make(map[string]*BatterCard, len(v.Batters))
		for n, b := range v.Batters {
			bc := *b
			ic.Batters[n] = &bc
		}
		ic.Bowlers = make(map[string]*BowlerCard, len(v.Bowlers))
		for n, b := range v.Bowlers {
			bc := *b
			ic.Bowlers[n] = &bc
		}
		c.Innings[k] = &ic
	}
	return &c
}

// marshal is json.Marshal for a state, which cannot fail: every field is plain data.
func (s *State) marshal() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic("ingest: marshal state: " + err.Error())
	}
	return b
}

// Marshal is the state's JSON text.
func (s *State) Marshal() []byte { return s.marshal() }
