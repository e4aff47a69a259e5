package server

import (
	"bytes"
	"encoding/json"
	"fmt"

	"crease/bus"
	"crease/wire"
)

// clientOp is one decoded client message (PROTOCOL.md "Messages, client to server").
type clientOp struct {
	Op    string // "subscribe", "unsubscribe" or "auth"
	Match string // a valid match id, for subscribe and unsubscribe
	Token string // for auth: non-empty, not yet verified
}

// parseOp decodes one client message. It returns the op, or the `error` code and a
// message that says exactly what is wrong, in the client's terms. Keys are exact (as
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
