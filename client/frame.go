package client

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// frame holds the fields of every server frame; decodeFrame fills those of its type.
type frame struct {
	Type       string
	Match      string
	Epoch      string
	Seq        uint64
	From       *uint64
	Patch      json.RawMessage
	Recovered  bool
	Reason     string
	AfterMS    float64
	Code       string
	Message    string
	Node       string
	HeartbeatS float64
}

// decodeFrame reads a server frame: its type and match, then only the members of that
// type, so that a member another type uses (an event's own "message" object, a newer
// gateway's "node" on a delta) cannot make a good frame unreadable: unknown and foreign
// members are ignored, as PROTOCOL.md asks. Keys are exact, as the gateway reads them
// (bus.Parse). On an error, Type and Match are set when they could be read.
func decodeFrame(raw []byte) (f frame, err error) {
	var top map[string]json.RawMessage
	if err = json.Unmarshal(raw, &top); err != nil {
		return f, err
	}
	read := func(key string, dst any) {
		if v, ok := top[key]; ok && err == nil {
			if e := json.Unmarshal(v, dst); e != nil {
				err = fmt.Errorf("%q: %w", key, e)
			}
		}
	}
	read("type", &f.Type)
	read("match", &f.Match)
	switch f.Type {
	case "hello":
		read("node", &f.Node)
		read("heartbeat_s", &f.HeartbeatS)
	case "subscribed":
		read("recovered", &f.Recovered)
	case "delta":
		read("epoch", &f.Epoch)
		read("seq", &f.Seq)
		read("from", &f.From)
		read("patch", &f.Patch)
	case "resync":
		read("reason", &f.Reason)
	case "reconnect":
		read("after_ms", &f.AfterMS)
	case "error":
		read("code", &f.Code)
		read("message", &f.Message)
	}
	return f, err // event, and types this client does not know: nothing more to read
}

// delta returns the stream fields of a `delta` frame.
func (f *frame) delta() Delta {
	d := Delta{Epoch: f.Epoch, Seq: f.Seq, Patch: f.Patch}
	if f.From != nil {
		d.CatchUp, d.From = true, *f.From
	}
	return d
}

// maxReconnectAfter caps a `reconnect` frame's after_ms: a drain spreads its clients
// over seconds, and a gateway's absurd value must neither freeze a client for years nor
// overflow into an immediate redial.
const maxReconnectAfter = 5 * time.Minute

// reconnectAfter is the wait a `reconnect` frame asks for, within [0, maxReconnectAfter].
func reconnectAfter(ms float64) time.Duration {
	switch {
	case !(ms > 0): // negative, zero, NaN
		return 0
	case ms >= float64(maxReconnectAfter/time.Millisecond):
		return maxReconnectAfter
	}
	return time.Duration(ms * float64(time.Millisecond))
}

// defaultHeartbeat and maxHeartbeat bound hello's heartbeat_s: one missing, zero or
// absurd (1e300 overflows to a negative deadline) takes the gateway's default, and the
// dead-link deadline never exceeds three hours.
const (
	defaultHeartbeat = 20 * time.Second
	maxHeartbeat     = time.Hour
)

// heartbeat is the gateway's ping interval from hello's heartbeat_s.
func heartbeat(s float64) time.Duration {
	if !(s > 0) || math.IsInf(s, 1) {
		return defaultHeartbeat
	}
	if s >= maxHeartbeat.Seconds() {
		return maxHeartbeat
	}
	return time.Duration(s * float64(time.Second))
}
