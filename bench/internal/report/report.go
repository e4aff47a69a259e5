// Package report holds the JSON shapes that loadgen prints and the harness reads, so
// the two can never drift apart, and the Markdown table heads the bench tools write.
package report

import (
	"encoding/base64"
	"sort"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Line is one line of loadgen's stdout: Event is "ready", "progress" or "report".
type Line struct {
	Event string `json:"event"`
	PID   int    `json:"pid"`
	// Open is the number of upgraded connections open right now.
	Open int64 `json:"open"`
	// Target is the number of connections this process keeps.
	Target int `json:"target"`
	// Attempted/Connected/FailedHandshakes count since the start.
	Attempted        int64            `json:"attempted"`
	Connected        int64            `json:"connected"`
	FailedHandshakes int64            `json:"failed_handshakes"`
	HandshakeStatus  map[string]int64 `json:"handshake_status,omitempty"`
	ConnectErrors    int64            `json:"connect_errors"`
	Stalled          int64            `json:"stalled"`
	Received         map[string]int64 `json:"received"`
	Gaps             int64            `json:"gaps"`
	GapMissing       int64            `json:"gap_missing"`
	Dups             int64            `json:"dups"`
	Resyncs          map[string]int64 `json:"resyncs,omitempty"`
	Closes           map[string]int64 `json:"closes,omitempty"`
	ProtocolErrors   int64            `json:"protocol_errors"`
	Latency          *Percentiles     `json:"latency_us,omitempty"`
	// Hist is the latency histogram (µs), hdrhistogram V2 compressed and base64: the
	// harness merges those of all processes.
	Hist  string `json:"hist,omitempty"`
	Storm *Storm `json:"storm,omitempty"`
	// WindowHist is the latency histogram (encoded like Hist) of the deltas received
	// since the previous progress line (loadgen --window-hist).
	WindowHist string `json:"window_hist,omitempty"`
	// Slow counts the connections that read slowly (loadgen --slow-frac).
	Slow int64 `json:"slow,omitempty"`
	// Nodes counts the open connections by the gateway their hello named.
	Nodes map[string]int64 `json:"nodes,omitempty"`
	// OffCookie counts upgrades whose hello named another gateway than the SRV cookie
	// the connection came with (loadgen --cookies).
	OffCookie int64 `json:"off_cookie,omitempty"`
	// Chain is the client algorithm's check (loadgen --snapshot-url).
	Chain *Chain `json:"chain,omitempty"`
}

// Chain is what loadgen's check of the client algorithm of PROTOCOL.md found: each
// subscription takes a REST snapshot after its subscribed frame and applies the deltas
// after it; every delta of one seq must be the same bytes on every connection, and the
// state the deltas lead to must be the state of the snapshots.
type Chain struct {
	// Snapshots answered, failed answers (retried), and snapshots older than the deltas
	// already buffered (fetched again, as the algorithm says).
	Snapshots      int64 `json:"snapshots"`
	SnapshotErrors int64 `json:"snapshot_errors"`
	Refetches      int64 `json:"refetches"`
	// GaveUp counts subscriptions that stopped asking after too many failed requests.
	GaveUp int64 `json:"gave_up,omitempty"`
	// Divergent counts deltas whose frame differs from another connection's frame of
	// the same seq; SnapshotMismatch snapshots whose state is not the state the deltas
	// led to.
	Divergent        int64 `json:"divergent"`
	SnapshotMismatch int64 `json:"snapshot_mismatch"`
	// Patches applied to this process's reference state, and patches that could not be
	// applied (not a JSON object).
	Applied    int64 `json:"applied"`
	BadPatches int64 `json:"bad_patches"`
	// The final check (after SIGUSR2): the final snapshot's seq, whether the reference
	// state at that seq is the snapshot's state (StateOK) or could not be computed
	// (StateUnknown), and the open subscriptions at that seq, behind it, or still
	// waiting for a snapshot.
	Final        bool   `json:"final"`
	FinalSeq     uint64 `json:"final_seq"`
	StateOK      bool   `json:"state_ok"`
	StateUnknown bool   `json:"state_unknown"`
	Equal        int64  `json:"equal"`
	Behind       int64  `json:"behind"`
	Waiting      int64  `json:"waiting"`
	Tainted      int64  `json:"tainted"` // open subscriptions that saw a divergent delta or snapshot
}

// Storm is what the reconnect-storm mode records. Times are Unix µs so that the harness
// can combine several processes on one clock.
type Storm struct {
	FirstCloseUs int64 `json:"first_close_us"`
	AllBackUs    int64 `json:"all_back_us"` // 0: not all back yet
	Reconnects   int64 `json:"reconnects"`
	// Handshakes counts successful handshakes per 100 ms bucket (key: Unix ms / 100).
	Handshakes map[int64]int64 `json:"handshakes_per_100ms,omitempty"`
}

// Percentiles summarises a latency histogram in µs.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p999"`
	Max   int64   `json:"max"`
}

// NewHist is the one histogram geometry everyone uses: 1 µs to 120 s, 3 digits.
func NewHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 120_000_000, 3) }

// Summarise turns h into Percentiles.
func Summarise(h *hdrhistogram.Histogram) *Percentiles {
	return &Percentiles{
		Count: h.TotalCount(), Mean: h.Mean(),
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), Max: h.Max(),
	}
}

// EncodeHist encodes h for a Line.
func EncodeHist(h *hdrhistogram.Histogram) string {
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

// DecodeHist reverses EncodeHist.
func DecodeHist(s string) (*hdrhistogram.Histogram, error) {
	// Encode already yields base64 text; we wrapped it once more to keep JSON simple.
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	return hdrhistogram.Decode(b)
}

// MergeHists merges the histograms each line encodes in the field that hist reads
// (Hist, WindowHist) into one; a line without one, or with one that does not decode,
// adds nothing.
func MergeHists(lines []Line, hist func(Line) string) *hdrhistogram.Histogram {
	h := NewHist()
	for _, ln := range lines {
		if enc := hist(ln); enc != "" {
			if x, err := DecodeHist(enc); err == nil {
				h.Merge(x)
			}
		}
	}
	return h
}

// SortedKeys returns the keys of m in order, for stable output.
func SortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// FormatCounts renders a small count map as "k=v k=v".
func FormatCounts(m map[string]int64) string {
	var b strings.Builder
	for i, k := range SortedKeys(m) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(itoa(m[k]))
	}
	return b.String()
}

func itoa(v int64) string {
	if v == 0 {
		return "0"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var buf [20]byte
	i := len(buf)
	for v > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	if neg {
		i--
		buf[i] = '-'
	}
	return string(buf[i:])
}

// AddCounts adds src into dst (allocating dst if needed) and returns dst.
func AddCounts(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}
