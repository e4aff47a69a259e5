package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"crease/bus"
	"crease/ingest"
)

// match is what the API holds of one match. Its fields are guarded by mu, held for the
// whole of each write.
type match struct {
	mu   sync.Mutex
	id   string
	refs int // requests holding it; guarded by API.mu
	matchMemory
}

// matchMemory is a match's state in memory.
type matchMemory struct {
	loaded  bool   // memory holds the store's state; false: read the store first
	known   bool   // the store holds the match
	epoch   string // its stream position
	seq     uint64
	state   []byte       // the state at seq ("" before the first delta)
	title   string       // for /v1/matches
	live    *ingest.Live // a cricket match (PUT /v1/matches/{id}); nil: any JSON state
	journal int          // journal entries the store holds (Journal.From of the next delta)
	// stored is the journal of the state at seq (what live is rebuilt from when a write
	// fails); its entries are never modified.
	stored [][]byte
	// uncertain: a write's outcome is unknown (the store was unreachable). Memory holds
	// the state before it; the next write reads the store first and adopts it, unless
	// the store holds nothing or is behind (it lost data): then memory re-seeds it.
	uncertain bool
	// replayed: the store's match is a file replay's (crease ingest --match): the API
	// does not write it.
	replayed bool
}

func (m *match) set(mm matchMemory) { m.matchMemory = mm }

// match returns the match of id for one request, which must release it.
func (a *API) match(id string) *match {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.matches[id]
	if m == nil {
		m = &match{id: id}
		a.matches[id] = m
	}
	m.refs++
	return m
}

// release ends a request's hold on m. A match that the store does not hold is forgotten
// once no request holds it, so refused requests for any number of ids keep no memory.
func (a *API) release(m *match, known bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m.refs--
	if m.refs == 0 && !known {
		delete(a.matches, m.id)
	}
}

// unavailable is the 503 of a store that cannot be reached.
func unavailable(err error) *httpError {
	return &httpError{status: http.StatusServiceUnavailable, code: "store_unavailable", retryAfter: true,
		detail: "the store cannot be reached; nothing was published: " + err.Error()}
}

// load reads the match from the store when memory does not hold it, or holds it but the
// last write's outcome is unknown.
func (a *API) load(ctx context.Context, m *match) error {
	if m.loaded && !m.uncertain {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.PublishTimeout)
	defer cancel()
	st, err := a.opts.Bus.Stored(ctx, m.id)
	switch {
	case err != nil && !errors.Is(err, bus.ErrUnknownMatch):
		return unavailable(err)
	case m.uncertain && m.known && (errors.Is(err, bus.ErrUnknownMatch) || st.Epoch == m.epoch && st.Seq < m.seq):
		// The store lost what this publisher holds: keep memory, the next delta
		// re-seeds the store (PROTOCOL.md's rule for a publisher holding the state).
		m.uncertain = false
		return nil
	case errors.Is(err, bus.ErrUnknownMatch):
		m.set(matchMemory{loaded: true})
		return nil
	}
	nm := matchMemory{loaded: true, known: true, epoch: st.Epoch, seq: st.Seq, state: st.State, journal: len(st.Journal), stored: st.Journal}
	if nm.epoch == "" {
		nm.epoch = bus.NewEpoch() // a store written before epochs: its seq + 1 is accepted
	}
	if ingest.IsReplayJournal(st.Journal) {
		nm.replayed = true
	} else if len(st.Journal) > 0 {
		l, err := ingest.NewLiveFromJournal(m.id, st.Journal)
		if err != nil {
			return refuse(http.StatusInternalServerError, "bad_journal", "the stored journal of %s does not rebuild: %v", m.id, err)
		}
		nm.live, nm.title = l, l.Title()
	}
	m.set(nm)
	return nil
}

// reload reads the store and adopts it when it is not where memory is (true).
func (a *API) reload(ctx context.Context, m *match) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.PublishTimeout)
	defer cancel()
	st, err := a.opts.Bus.Stored(ctx, m.id)
	if err != nil {
		if errors.Is(err, bus.ErrUnknownMatch) {
			return false, nil
		}
		return false, unavailable(err)
	}
	if st.Epoch == m.epoch && st.Seq == m.seq {
		return false, nil
	}
	m.loaded = false
	return true, a.load(ctx, m)
}

// failed restores memory to the state before a write the store did not take.
func (m *match) failed(conflict bool) {
	if conflict {
		m.loaded = false // another publisher: the store is the truth
		return
	}
	m.uncertain = true
	m.rollback()
}

// rollback puts the scorer back where the store is: a ball or an info that the scorer
// took but the store did not (refused, too large, failed) must leave no trace, or the
// next write would publish it.
func (m *match) rollback() {
	if m.live == nil {
		return
	}
	if len(m.stored) == 0 {
		m.live = nil
	} else if l, err := ingest.NewLiveFromJournal(m.id, m.stored); err == nil {
		m.live = l
	} else {
		m.loaded = false
	}
}

// checkIfMatch applies If-Match: "EPOCH.SEQ" (or *) to the current position, after
// refusing a match that a file replay publishes.
func (m *match) checkIfMatch(h string) error {
	if m.replayed {
		return refuse(http.StatusConflict, "replayed", "match %s is replayed from a file by crease ingest --match; the API does not write it", m.id)
	}
	return m.checkPosition(h)
}

// checkPosition applies If-Match (none, *, or a list of "EPOCH.SEQ") to the position.
func (m *match) checkPosition(h string) error {
	if h == "" {
		return nil
	}
	if strings.TrimSpace(h) == "*" {
		if !m.known {
			return refuse(http.StatusPreconditionFailed, "precondition_failed", "If-Match: * but the match does not exist")
		}
		return nil
	}
	cur := `"` + m.epoch + "." + strconv.FormatUint(m.seq, 10) + `"`
	for _, t := range strings.Split(h, ",") {
		if m.known && strings.TrimPrefix(strings.TrimSpace(t), "W/") == cur {
			return nil
		}
	}
	if !m.known {
		return refuse(http.StatusPreconditionFailed, "precondition_failed", "If-Match %s: the match does not exist", h)
	}
	return refuse(http.StatusPreconditionFailed, "precondition_failed", "If-Match %s: the match is at %s", h, cur)
}

// position is the answer of every successful write.
type position struct {
	Match  string `json:"match"`
	Epoch  string `json:"epoch"`
	Seq    uint64 `json:"seq"`
	Result string `json:"result,omitempty"` // deliveries: applied, duplicate, correction
}

func (m *match) position() position { return position{Match: m.id, Epoch: m.epoch, Seq: m.seq} }

// publish stores and publishes the change from m.state to next as one delta. It
// publishes nothing (and returns false) when next equals the stored state. On any
// failure the match's memory is dropped: the store is the truth to reload from.
func (a *API) publish(ctx context.Context, m *match, next []byte, patch []byte, prio bus.Prio, title string, l *ingest.Live) (bool, error) {
	if patch == nil {
		base := m.state
		if len(base) == 0 {
			base = []byte("{}")
		}
		var err error
		if patch, err = jsonpatch.CreateMergePatch(base, next); err != nil {
			m.rollback()
			return false, refuse(http.StatusBadRequest, "bad_state", "merge patch: %v", err)
		}
		if m.known && bytes.Equal(patch, []byte("{}")) {
			return false, nil
		}
	}
	epoch := m.epoch
	if !m.known {
		epoch = bus.NewEpoch() // a new stream: the store holds nothing
	}
	seq := m.seq + 1
	ts := a.opts.Now().UnixMicro()
	frame := ingest.DeltaFrame(m.id, epoch, seq, prio, ts, patch)
	if len(frame) > bus.MaxMessageBytes {
		m.rollback()
		return false, refuse(http.StatusRequestEntityTooLarge, "too_large", "the delta is %d bytes, over the bus limit of %d", len(frame), bus.MaxMessageBytes)
	}
	d := bus.Delta{Match: m.id, Title: title, Epoch: epoch, Seq: seq, State: next, Frame: frame}
	if l != nil {
		d.Journal = &bus.Journal{Entries: l.Journal(), From: l.JournalFrom(m.journal)}
	}
	pctx, cancel := context.WithTimeout(ctx, a.opts.PublishTimeout)
	defer cancel()
	if err := a.opts.Bus.PublishDelta(pctx, d); err != nil {
		conflict := errors.Is(err, bus.ErrSeqConflict)
		m.failed(conflict)
		switch {
		case conflict:
			return false, refuse(http.StatusConflict, "store_conflict", "the store refused seq %d: another publisher writes this match (%v); retry to continue from the store", seq, err)
		case errors.Is(err, bus.ErrInvalidMessage):
			return false, refuse(http.StatusBadRequest, "bad_state", "%v", err)
		}
		return false, unavailable(err)
	}
	m.known, m.epoch, m.seq, m.state = true, epoch, seq, next
	if title != "" {
		m.title = title
	}
	if l != nil {
		j := l.Journal()
		m.journal, m.stored = len(j), j[:len(j):len(j)]
		l.Stored()
	}
	return true, nil
}

func prioOf(s string, def bus.Prio) bus.Prio {
	switch s {
	case "high":
		return bus.PrioHigh
	case "normal":
		return bus.PrioNormal
	}
	return def
}

// liveErr maps the scorer's refusals to HTTP; the code names the kind, so the detail
// drops the sentinel's "ingest: ..." words.
func liveErr(err error) error {
	detail := func(sentinel error) string {
		return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
	}
	switch {
	case errors.Is(err, ingest.ErrOutOfOrder):
		return refuse(http.StatusConflict, "out_of_order", "%s", detail(ingest.ErrOutOfOrder))
	case errors.Is(err, ingest.ErrImpossible):
		return refuse(http.StatusBadRequest, "impossible", "%s", detail(ingest.ErrImpossible))
	case errors.Is(err, ingest.ErrBadBall):
		return refuse(http.StatusBadRequest, "bad_request", "%s", detail(ingest.ErrBadBall))
	}
	return err
}

// putMatch: PUT /v1/matches/{id} with a Cricsheet info object.
func (a *API) putMatch(req *request, m *match) (answer, error) {
	if err := a.load(req.r.Context(), m); err != nil {
		return answer{}, err
	}
	if err := m.checkIfMatch(req.ifMatch); err != nil {
		return answer{}, err
	}
	if m.known && m.live == nil {
		return answer{}, refuse(http.StatusConflict, "not_cricket", "match %s is published as a JSON state (PUT/PATCH /state), not from a Cricsheet info", m.id)
	}
	created := m.live == nil
	var l *ingest.Live
	var err error
	if created {
		l, err = ingest.NewLive(m.id, req.body)
	} else {
		// As for a ball: a write the store does not take drops the memory.
		l = m.live
		err = l.SetInfo(req.body)
	}
	if err != nil {
		return answer{}, liveErr(err)
	}
	next := l.State().Marshal()
	prio := bus.PrioNormal
	if l.Finished() {
		prio = bus.PrioHigh
	}
	if _, err := a.publish(req.r.Context(), m, next, nil, prioOf(req.prio, prio), l.Title(), l); err != nil {
		return answer{}, err
	}
	m.live = l
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return answer{status: status, body: m.position()}, nil
}

// postBall: POST /v1/matches/{id}/deliveries.
func (a *API) postBall(req *request, m *match) (answer, error) {
	p, err := ingest.DecodeBall(req.body)
	if err != nil {
		return answer{}, liveErr(err)
	}
	if err := a.load(req.r.Context(), m); err != nil {
		return answer{}, err
	}
	if err := m.checkIfMatch(req.ifMatch); err != nil {
		return answer{}, err
	}
	if m.live == nil {
		if m.known {
			return answer{}, refuse(http.StatusConflict, "not_cricket", "match %s is published as a JSON state, not ball by ball", m.id)
		}
		return answer{}, refuse(http.StatusNotFound, "unknown_match", "match %s does not exist: PUT /v1/matches/%s with its Cricsheet info first", m.id, m.id)
	}
	// A refused ball changes nothing; a ball the store does not take drops the memory
	// (publish), so the next request rebuilds the match from the store.
	l := m.live
	res, prio, text, got, err := l.Ball(p, m.seq+1)
	if errors.Is(err, ingest.ErrOutOfOrder) && !l.Finished() {
		// Another publisher may have moved the match on: if the store is ahead of
		// memory, take it and try the ball again.
		if fresh, ferr := a.reload(req.r.Context(), m); ferr != nil {
			return answer{}, ferr
		} else if fresh && m.live != nil {
			l = m.live
			res, prio, text, got, err = l.Ball(p, m.seq+1)
		}
	}
	if err != nil {
		return answer{}, liveErr(err)
	}
	if res == ingest.BallDuplicate {
		pos := m.position()
		pos.Seq, pos.Result = got, "duplicate"
		return answer{status: http.StatusOK, body: pos}, nil
	}
	if p.Prio != "" {
		req.prio = p.Prio
	}
	next := l.State().Marshal()
	published, err := a.publish(req.r.Context(), m, next, nil, prioOf(req.prio, prio), "", l)
	if err != nil {
		return answer{}, err
	}
	m.live = l
	pos := m.position()
	pos.Result = "applied"
	if res == ingest.BallCorrection {
		pos.Result = "correction"
	}
	if published && text != "" {
		ev := ingest.CommentaryFrame(m.id, a.opts.Now().UnixMicro(), l.State().Over, text)
		if err := a.opts.Bus.PublishEvent(req.r.Context(), m.id, ev); err != nil {
			a.log.Debug("commentary event not published", "match", m.id, "err", err) // events may be dropped
		}
	}
	return answer{status: http.StatusOK, body: pos}, nil
}

// putState: PUT /v1/matches/{id}/state with the whole state.
func (a *API) putState(req *request, m *match) (answer, error) {
	obj, err := jsonObject(req.body)
	if err != nil {
		return answer{}, refuse(http.StatusBadRequest, "bad_state", "the state must be a JSON object: %v", err)
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, req.body)
	return a.writeState(req, m, buf.Bytes(), nil, obj)
}

// patchState: PATCH /v1/matches/{id}/state with an RFC 7396 merge patch.
func (a *API) patchState(req *request, m *match) (answer, error) {
	if mt, _, _ := mime.ParseMediaType(req.r.Header.Get("Content-Type")); mt != "application/merge-patch+json" {
		req.header.Set("Accept-Patch", "application/merge-patch+json")
		return answer{}, refuse(http.StatusUnsupportedMediaType, "bad_content_type", "PATCH needs Content-Type: application/merge-patch+json")
	}
	obj, err := jsonObject(req.body)
	if err != nil {
		return answer{}, refuse(http.StatusBadRequest, "bad_patch", "the merge patch must be a JSON object: %v", err)
	}
	if err := a.load(req.r.Context(), m); err != nil {
		return answer{}, err
	}
	if len(obj) == 0 && m.known {
		// An empty merge patch changes nothing: publish nothing, as PUT of an equal state.
		if err := m.checkIfMatch(req.ifMatch); err != nil {
			return answer{}, err
		}
		if m.live != nil {
			return answer{}, refuse(http.StatusConflict, "cricket", "match %s is scored from its balls: POST /deliveries, or PUT /v1/matches/%s to change its info", m.id, m.id)
		}
		return answer{status: http.StatusOK, body: m.position()}, nil
	}
	base := m.state
	if len(base) == 0 {
		base = []byte("{}")
	}
	next, err := jsonpatch.MergePatch(base, req.body)
	if err != nil {
		return answer{}, refuse(http.StatusBadRequest, "bad_patch", "merge patch: %v", err)
	}
	var patch bytes.Buffer
	_ = json.Compact(&patch, req.body)
	var st map[string]json.RawMessage
	_ = json.Unmarshal(next, &st)
	return a.writeState(req, m, next, patch.Bytes(), st)
}

func (a *API) writeState(req *request, m *match, next, patch []byte, obj map[string]json.RawMessage) (answer, error) {
	if err := a.load(req.r.Context(), m); err != nil {
		return answer{}, err
	}
	if err := m.checkIfMatch(req.ifMatch); err != nil {
		return answer{}, err
	}
	if m.live != nil {
		return answer{}, refuse(http.StatusConflict, "cricket", "match %s is scored from its balls: POST /deliveries, or PUT /v1/matches/%s to change its info", m.id, m.id)
	}
	title := ""
	if t, ok := obj["title"]; ok {
		_ = json.Unmarshal(t, &title)
	}
	if title == "" && !m.known {
		title = m.id
	}
	if _, err := a.publish(req.r.Context(), m, next, patch, prioOf(req.prio, bus.PrioNormal), title, nil); err != nil {
		return answer{}, err
	}
	return answer{status: http.StatusOK, body: m.position()}, nil
}

// reserved are the event fields the API sets itself, and those of a delta, which an
// event frame must not carry (schema/publish-event.schema.json).
var reserved = []string{"type", "match", "prio", "ts", "seq", "epoch", "patch", "from"}

// postEvent: POST /v1/matches/{id}/events with {"kind":K, ...fields}.
func (a *API) postEvent(req *request, m *match) (answer, error) {
	obj, err := jsonObject(req.body)
	if err != nil {
		return answer{}, refuse(http.StatusBadRequest, "bad_event", "the event must be a JSON object: %v", err)
	}
	var kind string
	if err := json.Unmarshal(obj["kind"], &kind); err != nil || kind == "" || len(kind) > 32 {
		return answer{}, refuse(http.StatusBadRequest, "bad_event", "the event needs a kind: a string of 1 to 32 characters")
	}
	for _, f := range reserved {
		if _, ok := obj[f]; ok {
			return answer{}, refuse(http.StatusBadRequest, "bad_event", "the field %q is set by the API", f)
		}
	}
	if kind == "viewers" {
		// The page and the clients show it as a count (PROTOCOL.md "viewers").
		var n uint64
		if err := json.Unmarshal(obj["viewers"], &n); err != nil {
			return answer{}, refuse(http.StatusBadRequest, "bad_event", "a viewers event needs viewers: a whole number of 0 or more")
		}
	}
	if err := a.load(req.r.Context(), m); err != nil {
		return answer{}, err
	}
	if !m.known {
		return answer{}, refuse(http.StatusNotFound, "unknown_match", "match %s does not exist: an event goes to a started match (PUT /v1/matches/%s, or a first PUT/PATCH of its state)", m.id, m.id)
	}
	if req.ifMatch != "" {
		// A file replay's match takes events too (commentary beside a replay), so only
		// the position is checked here.
		if err := m.checkPosition(req.ifMatch); err != nil {
			return answer{}, err
		}
	}
	var body bytes.Buffer
	_ = json.Compact(&body, req.body)
	frame := fmt.Appendf(nil, `{"type":"event","match":%q,"prio":"low","ts":%d,`, m.id, a.opts.Now().UnixMicro())
	frame = append(frame, body.Bytes()[1:]...)
	if len(frame) > bus.MaxMessageBytes {
		return answer{}, refuse(http.StatusRequestEntityTooLarge, "too_large", "the event is %d bytes, over the bus limit of %d", len(frame), bus.MaxMessageBytes)
	}
	if _, err := bus.Parse(frame); err != nil {
		return answer{}, refuse(http.StatusBadRequest, "bad_event", "%v", err)
	}
	ctx, cancel := context.WithTimeout(req.r.Context(), a.opts.PublishTimeout)
	defer cancel()
	if err := a.opts.Bus.PublishEvent(ctx, m.id, frame); err != nil {
		return answer{}, unavailable(err)
	}
	return answer{status: http.StatusOK, body: m.position()}, nil
}

// jsonObject decodes a body that must be one JSON object, with an error that says where
// it is not (in JSON's words, not Go's).
func jsonObject(body []byte) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	err := json.Unmarshal(body, &obj)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return nil, errors.New("the body is empty")
	case errors.As(err, &syn):
		return nil, fmt.Errorf("invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		return nil, fmt.Errorf("got a JSON %s", typ.Value)
	case err != nil:
		return nil, errors.New(strings.TrimPrefix(err.Error(), "json: "))
	case obj == nil:
		return nil, errors.New("got null")
	}
	return obj, nil
}
