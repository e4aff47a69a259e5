package wire

// ErrorCode is the `code` of an `error` frame (PROTOCOL.md "Refusals") and the label of
// crease_client_errors_total. These are all the codes the gateway sends.
type ErrorCode string

// The codes of PROTOCOL.md "Refusals".
const (
	// CodeBadRequest: not valid JSON, not an object, a missing or malformed field (op
	// missing, empty or not a string included), or a binary message. Nothing changes;
	// it names the match when the message named a valid one.
	CodeBadRequest ErrorCode = "bad_request"
	// CodeUnknownOp: `op` is a non-empty string that is none of subscribe, unsubscribe,
	// auth. Nothing changes.
	CodeUnknownOp ErrorCode = "unknown_op"
	// CodeTooManySubscriptions: a subscribe over the connection's limit; not subscribed.
	CodeTooManySubscriptions ErrorCode = "too_many_subscriptions"
	// CodeForbidden: a match outside the token's claim: not subscribed, or an existing
	// subscription ended after an auth op.
	CodeForbidden ErrorCode = "forbidden"
	// CodeRateLimited: over the op rate; the op is not done (a flood beyond it closes
	// with 1008, ReasonOpFlood).
	CodeRateLimited ErrorCode = "rate_limited"
	// CodeUnauthorized: an auth op's token was refused; the current token stays.
	CodeUnauthorized ErrorCode = "unauthorized"
	// CodeTokenExpired: the token reached its exp; a 4001 close follows at once.
	CodeTokenExpired ErrorCode = "token_expired"
)

// ErrorCodes lists every code, for pre-creating metric labels.
func ErrorCodes() []ErrorCode {
	return []ErrorCode{CodeBadRequest, CodeUnknownOp, CodeTooManySubscriptions, CodeForbidden,
		CodeRateLimited, CodeUnauthorized, CodeTokenExpired}
}
