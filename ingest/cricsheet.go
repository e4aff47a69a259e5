package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"reflect"
	"strings"

	"crease/bus"
)

// ErrInvalidMatch wraps every reason ReadMatch refuses a file.
var ErrInvalidMatch = errors.New("ingest: invalid match file")

// MaxFileBytes bounds one Cricsheet file. The longest Test is well under 2 MiB; a larger
// file is not a match.
const MaxFileBytes = 8 << 20

// Bounds that make a value impossible rather than merely unusual. They also keep sums far
// from overflow whatever a file holds.
const (
	// maxRunsPerBall bounds runs.total, runs.extras and an innings' penalty_runs: they
	// are sums of the bounded fields below (or of several penalty awards).
	maxRunsPerBall = 50
	// maxBatRuns: runs off the bat on one ball are what the batters ran plus overthrows
	// to the boundary, at most 4 + 4 in the game's records (Cricsheet records
	// overthrows as runs.batter); the real matches (ingest/matches) have at most 6.
	maxBatRuns = 8
	// maxExtraRuns bounds each of extras.wides, noballs, byes and legbyes: the 1 (2 in
	// some domestic rules) of the wide or no-ball, plus what was run and overthrown (8).
	// Real data has wides 5 (a wide to the boundary), byes and legbyes 4, noballs 1.
	maxExtraRuns = 10
	// maxPenaltyRuns: a penalty is 5 runs; two awards on one delivery are 10.
	maxPenaltyRuns = 10
	// maxBallsPerOver: Cricsheet has 4 to 8 (6 today, 5 in The Hundred). At most 8
	// keeps an over's legal balls, bpo+1 after an umpire's miscount, one digit ("0.7").
	maxBallsPerOver = 8
	// maxWicketsPerDel: a retirement (or timed out) recorded with a dismissal. At
	// most one of them is a dismissal in play (see checkDelivery).
	maxWicketsPerDel = 2
)

// Error is a refusal of a match file, naming the file and the place in it. Over is the
// file's own over number (0-based, as in Cricsheet) and Ball the 1-based position of the
// delivery in that over's list; zero fields are not part of the place.
type Error struct {
	File    string
	Innings int // 1-based; 0: not in an innings
	Over    int // valid when Ball > 0 or HasOver
	Ball    int // 1-based; 0: not at a delivery
	HasOver bool
	Line    int // for syntax errors: 1-based line and column
	Col     int
	Msg     string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteString(": ")
	switch {
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d, column %d: ", e.Line, e.Col)
	case e.Innings > 0:
		fmt.Fprintf(&b, "innings %d", e.Innings)
		if e.HasOver || e.Ball > 0 {
			fmt.Fprintf(&b, ", over %d", e.Over)
		}
		if e.Ball > 0 {
			fmt.Fprintf(&b, ", ball %d", e.Ball)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every *Error match ErrInvalidMatch.
func (e *Error) Unwrap() error { return ErrInvalidMatch }

// The Cricsheet JSON format (https://cricsheet.org/format/json/, data versions 1.0.0 and
// 1.1.0). Every field Cricsheet documents is declared, so that strict decoding refuses
// only what is really unknown.

type csMatch struct {
	Meta    csMeta            `json:"meta"`
	Info    csInfo            `json:"info"`
	Innings []json.RawMessage `json:"innings"`
}

type csMeta struct {
	DataVersion string          `json:"data_version"`
	Created     string          `json:"created"`
	Revision    json.RawMessage `json:"revision"`
}

type csInfo struct {
	BallsPerOver    int                        `json:"balls_per_over"`
	BowlOut         []csBowlOut                `json:"bowl_out"`
	City            string                     `json:"city"`
	Dates           []string                   `json:"dates"`
	Event           csEvent                    `json:"event"`
	Gender          string                     `json:"gender"`
	MatchType       string                     `json:"match_type"`
	MatchTypeNumber json.RawMessage            `json:"match_type_number"`
	Missing         json.RawMessage            `json:"missing"`
	Officials       map[string][]string        `json:"officials"`
	Outcome         csOutcome                  `json:"outcome"`
	Overs           int                        `json:"overs"`
	PlayerOfMatch   []string                   `json:"player_of_match"`
	Players         map[string][]string        `json:"players"`
	Registry        map[string]json.RawMessage `json:"registry"`
	Season          json.RawMessage            `json:"season"` // "2022/23", or a number in old files
	Supersubs       map[string]string          `json:"supersubs"`
	TeamType        string                     `json:"team_type"`
	Teams           []string                   `json:"teams"`
	Toss            csToss                     `json:"toss"`
	Venue           string                     `json:"venue"`
}

type csBowlOut struct {
	Bowler  string `json:"bowler"`
	Outcome string `json:"outcome"`
}

type csEvent struct {
	Name        string          `json:"name"`
	MatchNumber json.RawMessage `json:"match_number"`
	Group       json.RawMessage `json:"group"`
	Stage       string          `json:"stage"`
	SubName     string          `json:"sub_name"`
}

type csOutcome struct {
	By         csBy   `json:"by"`
	BowlOut    string `json:"bowl_out"`
	Eliminator string `json:"eliminator"`
	Method     string `json:"method"`
	Result     string `json:"result"`
	Winner     string `json:"winner"`
}

type csBy struct {
	Innings int `json:"innings"`
	Runs    int `json:"runs"`
	Wickets int `json:"wickets"`
}

type csToss struct {
	Decision    string `json:"decision"`
	Winner      string `json:"winner"`
	Uncontested bool   `json:"uncontested"`
}

type csInnings struct {
	Team            string            `json:"team"`
	Overs           []json.RawMessage `json:"overs"`
	AbsentHurt      []string          `json:"absent_hurt"`
	Declared        bool              `json:"declared"`
	Forfeited       bool              `json:"forfeited"`
	MiscountedOvers json.RawMessage   `json:"miscounted_overs"`
	PenaltyRuns     csPenaltyRuns     `json:"penalty_runs"`
	Powerplays      json.RawMessage   `json:"powerplays"`
	SuperOver       bool              `json:"super_over"`
	Target          *csTarget         `json:"target"`
}

type csPenaltyRuns struct {
	Pre  int `json:"pre"`
	Post int `json:"post"`
}

type csTarget struct {
	Overs float64 `json:"overs"` // may be fractional after an interruption, e.g. 18.4
	Runs  int     `json:"runs"`
}

type csOver struct {
	Over       int               `json:"over"`
	Deliveries []json.RawMessage `json:"deliveries"`
}

type csDelivery struct {
	Batter       string          `json:"batter"`
	Bowler       string          `json:"bowler"`
	NonStriker   string          `json:"non_striker"`
	Runs         csRuns          `json:"runs"`
	Extras       csExtras        `json:"extras"`
	Wickets      []csWicket      `json:"wickets"`
	Replacements csReplacements  `json:"replacements"`
	Review       json.RawMessage `json:"review"`
}

type csRuns struct {
	Batter      int    `json:"batter"`
	Extras      int    `json:"extras"`
	Total       int    `json:"total"`
	NonBoundary flexTF `json:"non_boundary"`
}

type csExtras struct {
	Wides   int `json:"wides"`
	Noballs int `json:"noballs"`
	Byes    int `json:"byes"`
	Legbyes int `json:"legbyes"`
	Penalty int `json:"penalty"`
}

type csWicket struct {
	PlayerOut string      `json:"player_out"`
	Kind      string      `json:"kind"`
	Fielders  []csFielder `json:"fielders"`
}

type csFielder struct {
	Name       string `json:"name"`
	Substitute bool   `json:"substitute"`
}

type csReplacements struct {
	Match []csReplacement `json:"match"`
	Role  []csReplacement `json:"role"`
}

type csReplacement struct {
	In     string `json:"in"`
	Out    string `json:"out"`
	Team   string `json:"team"`
	Reason string `json:"reason"`
	Role   string `json:"role"`
}

// flexTF is Cricsheet's non_boundary flag: true in current files, 1 in some converted ones.
type flexTF bool

func (f *flexTF) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true", "1":
		*f = true
	case "false", "0", "null":
		*f = false
	default:
		return fmt.Errorf("non_boundary %s is not a boolean", b)
	}
	return nil
}

// Dismissal kinds, as Cricsheet spells them.
const (
	kindCaught        = "caught"
	kindBowled        = "bowled"
	kindLBW           = "lbw"
	kindRunOut        = "run out"
	kindStumped       = "stumped"
	kindHitWicket     = "hit wicket"
	kindCaughtBowled  = "caught and bowled"
	kindRetiredHurt   = "retired hurt"
	kindRetiredOut    = "retired out"
	kindRetiredNotOut = "retired not out"
	kindObstructing   = "obstructing the field"
	kindHandled       = "handled the ball"
	kindTimedOut      = "timed out"
	kindHitTwice      = "hit the ball twice"
)

// dismissal says how a kind of wicket counts.
type dismissal struct {
	team   bool // counts as a team wicket (retired hurt and not out do not)
	bowler bool // credited to the bowler
	crease bool // the player out is necessarily at the crease (batter or non-striker)
}

var dismissals = map[string]dismissal{
	kindCaught:        {team: true, bowler: true, crease: true},
	kindBowled:        {team: true, bowler: true, crease: true},
	kindLBW:           {team: true, bowler: true, crease: true},
	kindStumped:       {team: true, bowler: true, crease: true},
	kindHitWicket:     {team: true, bowler: true, crease: true},
	kindCaughtBowled:  {team: true, bowler: true, crease: true},
	kindRunOut:        {team: true, crease: true},
	kindObstructing:   {team: true, crease: true},
	kindHandled:       {team: true, crease: true},
	kindHitTwice:      {team: true, crease: true},
	kindRetiredOut:    {team: true},
	kindTimedOut:      {team: true}, // the incoming batter, who never reached the crease
	kindRetiredHurt:   {},
	kindRetiredNotOut: {},
}

// Delivery is one validated ball of a parsed match.
type delivery struct {
	csDelivery
	over int // the file's over number
}

func (d *delivery) wide() bool  { return d.Extras.Wides > 0 }
func (d *delivery) legal() bool { return d.Extras.Wides == 0 && d.Extras.Noballs == 0 }

type innings struct {
	csInnings
	overs [][]delivery // by position in the file
	n     int          // deliveries
}

// decodeStrict decodes one JSON value, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return errors.New("got null, want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// lineCol turns a byte offset of data into a 1-based line and column.
func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// cleanJSONErr says what is wrong in JSON's words, not Go's: these messages reach the
// publish API's callers, who write JSON in any language.
func cleanJSONErr(err error) string {
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typ):
		field := typ.Field
		if i := strings.LastIndexByte(field, '.'); i >= 0 {
			field = field[i+1:]
		}
		if field == "" {
			return fmt.Sprintf("got a JSON %s, want %s", typ.Value, jsonKind(typ.Type))
		}
		return fmt.Sprintf("%s: got a JSON %s, want %s", field, typ.Value, jsonKind(typ.Type))
	case errors.Is(err, io.EOF):
		return "the JSON is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON is cut short"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "another type"
}

// ReadMatch parses and validates a whole Cricsheet JSON file. name is the file name, used
// in errors; the match id is its base name without ".json" and must be a valid match id.
// Nothing is published from a file that ReadMatch refused: every delivery has been checked
// (and the match scored once) before it returns.
func ReadMatch(name string, data []byte) (*Match, error) {
	id := strings.TrimSuffix(path.Base(strings.ReplaceAll(name, "\\", "/")), ".json")
	return readMatch(name, id, data)
}

// ReadMatchID is ReadMatch with an explicit match id.
func ReadMatchID(id, name string, data []byte) (*Match, error) {
	return readMatch(name, id, data)
}

func readMatch(name, id string, data []byte) (*Match, error) {
	fail := func(format string, a ...any) error {
		return &Error{File: name, Msg: fmt.Sprintf(format, a...)}
	}
	if !bus.ValidMatchID(id) {
		return nil, fail("match id %q is not 1 to 64 characters of A-Z a-z 0-9 _ -", id)
	}
	if len(data) > MaxFileBytes {
		return nil, fail("%d bytes is over the %d-byte limit", len(data), MaxFileBytes)
	}
	var raw csMatch
	if err := decodeStrict(data, &raw); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			l, c := lineCol(data, syn.Offset-1) // Offset counts the offending byte
			return nil, &Error{File: name, Line: l, Col: c, Msg: cleanJSONErr(err)}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fail("truncated file: %v", err)
		}
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			l, c := lineCol(data, typ.Offset)
			return nil, &Error{File: name, Line: l, Col: c, Msg: cleanJSONErr(err)}
		}
		return nil, fail("%s", cleanJSONErr(err))
	}
	m := &Match{id: id, file: name, info: raw.Info}
	if err := m.checkInfo(); err != nil {
		return nil, err
	}
	for i, ri := range raw.Innings {
		inn, err := m.readInnings(i+1, ri)
		if err != nil {
			return nil, err
		}
		m.innings = append(m.innings, inn)
	}
	if err := m.checkPlay(); err != nil {
		return nil, err
	}
	// Score the whole match once, so that anything the scorer would trip on is found
	// before the first publish.
	e := newEngine(m)
	for !e.done() {
		if e.phase == phaseStart {
			if msg := e.cannotOpen(e.inn, m.innings[e.inn]); msg != "" {
				return nil, &Error{File: name, Innings: e.inn + 1, Msg: msg}
			}
		}
		if d, bi := e.peek(); d != nil {
			if msg := e.implausible(d); msg != "" {
				return nil, &Error{File: name, Innings: e.inn + 1, Over: d.over, Ball: bi + 1, HasOver: true, Msg: msg}
			}
		}
		e.step()
	}
	if msg := e.outcomeImpossible(); msg != "" {
		return nil, &Error{File: name, Msg: msg}
	}
	m.final = e.st.clone()
	return m, nil
}

func (m *Match) errf(format string, a ...any) error {
	return &Error{File: m.file, Msg: fmt.Sprintf(format, a...)}
}

func (m *Match) readInnings(n int, data json.RawMessage) (*innings, error) {
	at := func(over, ball int, hasOver bool, format string, a ...any) error {
		return &Error{File: m.file, Innings: n, Over: over, Ball: ball, HasOver: hasOver, Msg: fmt.Sprintf(format, a...)}
	}
	inn := &innings{}
	if err := decodeStrict(data, &inn.csInnings); err != nil {
		return nil, at(0, 0, false, "%s", cleanJSONErr(err))
	}
	if inn.Team != m.info.Teams[0] && inn.Team != m.info.Teams[1] {
		return nil, at(0, 0, false, "team %q is not one of the teams", inn.Team)
	}
	if p := inn.PenaltyRuns; p.Pre < 0 || p.Post < 0 || p.Pre > maxRunsPerBall || p.Post > maxRunsPerBall {
		return nil, at(0, 0, false, "penalty_runs %+v are out of range", p)
	}
	if t := inn.Target; t != nil {
		if t.Runs < 1 || t.Overs < 0 || t.Overs > 1000 {
			return nil, at(0, 0, false, "target %+v is impossible", *t)
		}
		if _, ok := oversToBalls(t.Overs, m.bpo); !ok {
			return nil, at(0, 0, false, "target.overs %v is not overs.balls", t.Overs)
		}
	}
	if len(inn.Overs) == 0 && !inn.Forfeited {
		return nil, at(0, 0, false, "an innings without overs that is not forfeited")
	}
	prevOver := -1
	for oi, ro := range inn.Overs {
		var o csOver
		if err := decodeStrict(ro, &o); err != nil {
			return nil, at(prevOver+1, 0, true, "over at position %d: %s", oi+1, cleanJSONErr(err))
		}
		if o.Over <= prevOver || o.Over > 10000 {
			return nil, at(o.Over, 0, true, "over number %d does not follow over %d", o.Over, prevOver)
		}
		prevOver = o.Over
		if len(o.Deliveries) == 0 {
			return nil, at(o.Over, 0, true, "over without deliveries")
		}
		ds := make([]delivery, 0, len(o.Deliveries))
		for bi, rd := range o.Deliveries {
			d := delivery{over: o.Over}
			if err := decodeStrict(rd, &d.csDelivery); err != nil {
				return nil, at(o.Over, bi+1, true, "%s", cleanJSONErr(err))
			}
			if msg := checkDelivery(&d.csDelivery); msg != "" {
				return nil, at(o.Over, bi+1, true, "%s", msg)
			}
			ds = append(ds, d)
		}
		inn.overs = append(inn.overs, ds)
		inn.n += len(ds)
	}
	return inn, nil
}
