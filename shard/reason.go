package shard

import "crease/codec"

// CloseReason is why a connection ended. It maps to the WebSocket close code sent and is
// the label of crease_disconnects_total.
type CloseReason uint8

// Close reasons. The zero value is ReasonPeer.
const (
	ReasonPeer             CloseReason = iota // the peer went away without a close frame (EOF, reset)
	ReasonNormal                              // the peer closed normally; 1000 echoed
	ReasonShutdown                            // gateway stopping without a drain: 1001
	ReasonDrain                               // drain: reconnect was sent first, then 1012
	ReasonProtocol                            // protocol error: 1002
	ReasonBadUTF8                             // invalid UTF-8 in a text message: 1007
	ReasonTooBig                              // message too large: 1009
	ReasonPolicy                              // a policy violation the frame reader found: 1008
	ReasonSlow                                // could not keep up for too long: 4008
	ReasonIdle                                // nothing arrived for 3 heartbeats: 4000
	ReasonHandshakeTimeout                    // handshake not complete within the deadline (no frame)
	ReasonHandshakeRefused                    // refused with an HTTP status before the upgrade (no frame)
	ReasonOpFlood                             // went on sending far over the op rate after rate_limited: 1008
	ReasonTokenExpired                        // the token expired and no auth op replaced it: 4001
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonPeer:             "peer_gone",
	ReasonNormal:           "normal",
	ReasonShutdown:         "shutdown",
	ReasonDrain:            "drain",
	ReasonProtocol:         "protocol_error",
	ReasonBadUTF8:          "invalid_utf8",
	ReasonTooBig:           "message_too_big",
	ReasonPolicy:           "policy",
	ReasonSlow:             "slow_consumer",
	ReasonIdle:             "idle_timeout",
	ReasonHandshakeTimeout: "handshake_timeout",
	ReasonHandshakeRefused: "handshake_refused",
	ReasonOpFlood:          "op_flood",
	ReasonTokenExpired:     "token_expired",
}

var reasonCodes = [numReasons]uint16{
	ReasonNormal:       1000,
	ReasonShutdown:     1001,
	ReasonDrain:        1012,
	ReasonProtocol:     1002,
	ReasonBadUTF8:      1007,
	ReasonTooBig:       1009,
	ReasonPolicy:       1008,
	ReasonSlow:         codec.CloseSlowConsumer,
	ReasonIdle:         codec.CloseIdle,
	ReasonOpFlood:      codec.ClosePolicy,
	ReasonTokenExpired: codec.CloseTokenExpired,
}

// String returns the metric label of r.
func (r CloseReason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Code returns the WebSocket close code sent for r, or 0 when no close frame is sent.
func (r CloseReason) Code() uint16 {
	if r < numReasons {
		return reasonCodes[r]
	}
	return 0
}

// CloseReasons lists every reason, for pre-creating metric labels.
func CloseReasons() []CloseReason {
	out := make([]CloseReason, numReasons)
	for i := range out {
		out[i] = CloseReason(i)
	}
	return out
}

// ReasonForCode maps a close code from a protocol violation to its reason.
func ReasonForCode(code uint16) CloseReason {
	switch code {
	case 1007:
		return ReasonBadUTF8
	case 1009:
		return ReasonTooBig
	case 1008:
		return ReasonPolicy
	default:
		return ReasonProtocol
	}
}
