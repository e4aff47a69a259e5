package bus

import (
	"crypto/rand"
	"time"
)

// MaxEpochLen is the longest epoch PROTOCOL.md allows.
const MaxEpochLen = 32

// ValidEpoch reports whether s is 1 to 32 characters of A-Z a-z 0-9 _ -.
func ValidEpoch(s string) bool { return len(s) <= MaxEpochLen && ValidMatchID(s) }

const epochAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewEpoch returns a fresh random epoch: 12 characters of A-Z a-z 0-9 (71 bits), so that
// an epoch is never reused for a match, whoever starts its stream and whenever.
func NewEpoch() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics on a broken OS source)
	for i := range b {
		b[i] = epochAlphabet[int(b[i])%len(epochAlphabet)]
	}
	return string(b[:])
}

// Defaults of HistoryOptions.
const (
	DefaultHistoryDeltas = 300
	DefaultHistoryAge    = 10 * time.Minute
	DefaultHistoryBytes  = 1 << 20
)

// HistoryOptions bounds the per-match history of recent deltas kept by a store. Zero
// fields take the defaults; a negative MaxDeltas keeps no history.
type HistoryOptions struct {
	// MaxDeltas is the most deltas kept per match: DefaultHistoryDeltas.
	MaxDeltas int
	// MaxAge drops deltas whose ts is older than the newest delta's by more than this,
	// and a match's whole history once nothing was published for this long:
	// DefaultHistoryAge.
	MaxAge time.Duration
	// MaxBytes bounds the frames' bytes kept per match: DefaultHistoryBytes.
	MaxBytes int
}

// WithDefaults fills zero fields.
func (o HistoryOptions) WithDefaults() HistoryOptions {
	if o.MaxDeltas == 0 {
		o.MaxDeltas = DefaultHistoryDeltas
	}
	if o.MaxDeltas < 0 {
		o.MaxDeltas = 0
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultHistoryAge
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultHistoryBytes
	}
	return o
}

// StoreRule applies the store rules of PublishResult to a delta at (epoch, seq) over a
// store holding (storedEpoch, storedSeq), has false when it holds nothing. same reports
// that the stored snapshot is the delta's own (a retry). A stored epoch "" is a store
// written before epochs existed: its seq + 1 is accepted from any epoch.
func StoreRule(has bool, storedEpoch string, storedSeq uint64, epoch string, seq uint64, same bool) PublishResult {
	switch {
	case !has && seq == 1:
		return ResultNewEpoch
	case !has:
		return ResultReseededEmpty
	case storedEpoch == "" && seq == storedSeq+1:
		return ResultApplied
	case storedEpoch != epoch:
		return ResultRefused
	case seq == storedSeq+1:
		return ResultApplied
	case seq == storedSeq && same:
		return ResultDuplicate
	case seq > storedSeq+1:
		return ResultReseededBehind
	}
	return ResultRefused
}
