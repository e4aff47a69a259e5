package wire

// CloseReason is why a connection ended (PROTOCOL.md "Closing"). It maps to the
// WebSocket close code sent, if any, and is the label of crease_disconnects_total.
type CloseReason uint8

// Close reasons. The zero value is ReasonPeer.
const (
	ReasonPeer             CloseReason = iota // the peer went away without a close frame (EOF, reset)
	ReasonNormal                              // the peer closed normally; 1000 echoed
	ReasonShutdown                            // gateway stopping without a drain: 1001
	ReasonDrain                               // drain: reconnect was sent first, then 1012
	ReasonProtocol                            // protocol error: 1002
	ReasonBadUTF8                             // invalid UTF-8 in a text message: 1007
	ReasonTooBig                              // a message over 4 KiB: 1009
	ReasonOpFlood                             // went on sending far over the op rate after rate_limited: 1008
	ReasonIdle                                // nothing arrived for 3 heartbeats: 4000
	ReasonTokenExpired                        // the token expired and no auth op replaced it: 4001
	ReasonSlow                                // could not keep up for too long: 4008
	ReasonHandshakeTimeout                    // handshake not complete within the deadline (no frame)
	ReasonHandshakeRefused                    // refused with an HTTP status before the upgrade (no frame)
	numReasons
)

// The close codes the gateway sends (PROTOCOL.md "Closing"): RFC 6455's (7.4.1, the
// same values as crease/codec's, which parses them) and its own, in the range for
// applications.
const (
	CloseNormal       uint16 = 1000
	CloseGoingAway    uint16 = 1001
	CloseProtocol     uint16 = 1002
	CloseInvalidData  uint16 = 1007
	ClosePolicy       uint16 = 1008
	CloseTooBig       uint16 = 1009
	CloseRestart      uint16 = 1012
	CloseIdle         uint16 = 4000 // nothing arrived for 3 heartbeats
	CloseTokenExpired uint16 = 4001 // the token expired and no auth op replaced it
	CloseSlowConsumer uint16 = 4008 // the connection could not keep up
)

var reasons = [numReasons]struct {
	label string
	code  uint16
}{
	ReasonPeer:             {"peer_gone", 0},
	ReasonNormal:           {"normal", CloseNormal},
	ReasonShutdown:         {"shutdown", CloseGoingAway},
	ReasonDrain:            {"drain", CloseRestart},
	ReasonProtocol:         {"protocol_error", CloseProtocol},
	ReasonBadUTF8:          {"invalid_utf8", CloseInvalidData},
	ReasonTooBig:           {"message_too_big", CloseTooBig},
	ReasonOpFlood:          {"op_flood", ClosePolicy},
	ReasonIdle:             {"idle_timeout", CloseIdle},
	ReasonTokenExpired:     {"token_expired", CloseTokenExpired},
	ReasonSlow:             {"slow_consumer", CloseSlowConsumer},
	ReasonHandshakeTimeout: {"handshake_timeout", 0},
	ReasonHandshakeRefused: {"handshake_refused", 0},
}

// String returns the metric label of r.
func (r CloseReason) String() string {
	if r < numReasons {
		return reasons[r].label
	}
	return "unknown"
}

// Code returns the WebSocket close code sent for r, or 0 when no close frame is sent.
func (r CloseReason) Code() uint16 {
	if r < numReasons {
		return reasons[r].code
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

// ReasonForCode maps the close code of a client's protocol violation, as codec.Reader
// reports it in a codec.CloseError, to its reason.
func ReasonForCode(code uint16) CloseReason {
	switch code {
	case CloseInvalidData:
		return ReasonBadUTF8
	case CloseTooBig:
		return ReasonTooBig
	default:
		return ReasonProtocol
	}
}
