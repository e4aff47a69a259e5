package server

import (
	"bytes"
	"encoding/json"
	"fmt"

	"crease/bus"
	"crease/shard"
	"crease/wire"
)

// clientOp is one decoded client message (PROTOCOL.md "Messages, client to server").
type clientOp struct {
	Op    string // "subscribe", "unsubscribe" or "auth"
	Match string // a valid match id, for subscribe and unsubscribe
	Token string // for auth: non-empty, not yet verified
	// Since is a subscribe's optional position (PROTOCOL.md `since`), when HasSince.
	Since    shard.Since
	HasSince bool
}

// parseOp decodes one client message. It returns the op, or the `error` code and a
// message that says exactly what is wrong, in the client's terms; a refused op comes
// back empty except for Match, set when the message named a valid match id (a subscribe
// with a malformed `since`), so that the `error` names the match concerned. Keys are exact (as
// in bus.Parse): "Op" is not "op". Unknown fields are ignored, so that a newer client's
// additions reach an older gateway harmlessly. It is pure, for FuzzClientOp.
func parseOp(payload []byte) (op clientOp, code wire.ErrorCode, message string) {
	if !json.Valid(payload) {
		return op, wire.CodeBadRequest, "message is not valid JSON"
	}
	if kind := jsonKind(payload); kind != "an object" {
		return op, wire.CodeBadRequest, "message must be a JSON object, not " + kind
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return op, wire.CodeBadRequest, "message is not a JSON object" // unreachable after the checks above
	}
	raw, ok := fields["op"]
	if !ok {
		return op, wire.CodeBadRequest, `missing "op"`
	}
	if json.Unmarshal(raw, &op.Op) != nil || jsonKind(raw) != "a string" {
		return clientOp{}, wire.CodeBadRequest, `"op" must be a string, not ` + jsonKind(raw)
	}
	switch op.Op {
	case "subscribe", "unsubscribe":
		m, code, message := stringField(fields, "match")
		if code != "" {
			return clientOp{}, code, message
		}
		if !bus.ValidMatchID(m) {
			return clientOp{}, wire.CodeBadRequest, `"match" must be 1 to 64 characters of A-Z a-z 0-9 _ -`
		}
		op.Match = m
		if op.Op == "subscribe" {
			if op.Since, op.HasSince, code, message = sinceField(fields); code != "" {
				return clientOp{Match: m}, code, message
			}
		}
	case "auth":
		tok, code, message := stringField(fields, "token")
		if code != "" {
			return clientOp{}, code, message
		}
		if tok == "" {
			return clientOp{}, wire.CodeBadRequest, `"token" must not be empty`
		}
		op.Token = tok
	case "":
		return clientOp{}, wire.CodeBadRequest, `"op" must not be empty`
	default:
		return clientOp{}, wire.CodeUnknownOp, fmt.Sprintf("unknown op %.40q; the ops are subscribe, unsubscribe and auth", op.Op)
	}
	return op, "", ""
}

// stringField returns the string field name of fields, or the refusal for a missing or
// non-string one.
func stringField(fields map[string]json.RawMessage, name string) (v string, code wire.ErrorCode, message string) {
	raw, ok := fields[name]
	if !ok {
		return "", wire.CodeBadRequest, `missing "` + name + `"`
	}
	if jsonKind(raw) != "a string" || json.Unmarshal(raw, &v) != nil {
		return "", wire.CodeBadRequest, `"` + name + `" must be a string, not ` + jsonKind(raw)
	}
	return v, "", ""
}

// jsonKind names the kind of a valid JSON value, for error messages.
func jsonKind(v []byte) string {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// sinceField reads a subscribe's optional `since`: {"epoch": a valid epoch, "seq": a
// whole number ≥ 0}; null is the same as none.
func sinceField(fields map[string]json.RawMessage) (since shard.Since, has bool, code wire.ErrorCode, message string) {
	raw, ok := fields["since"]
	if !ok || jsonKind(raw) == "null" {
		return since, false, "", ""
	}
	const want = `"since" must be {"epoch":"...","seq":N}, the position held`
	var pos map[string]json.RawMessage
	if jsonKind(raw) != "an object" || json.Unmarshal(raw, &pos) != nil {
		return since, false, wire.CodeBadRequest, want + ", not " + jsonKind(raw)
	}
	epoch, code, message := stringField(pos, "epoch")
	if code != "" {
		return since, false, code, `"since": ` + message
	}
	if !bus.ValidEpoch(epoch) {
		return since, false, wire.CodeBadRequest, `"since" epoch must be 1 to 32 characters of A-Z a-z 0-9 _ -`
	}
	seqRaw, ok := pos["seq"]
	var seq uint64
	if !ok || jsonKind(seqRaw) != "a number" || json.Unmarshal(seqRaw, &seq) != nil {
		return since, false, wire.CodeBadRequest, `"since" seq must be a whole number from 0`
	}
	return shard.Since{Epoch: epoch, Seq: seq}, true, "", ""
}
