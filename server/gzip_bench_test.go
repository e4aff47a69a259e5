package server_test

import (
	"context"
	"fmt"
	"testing"

	"crease/bus"
	"crease/ingest"
	"crease/server"
	"crease/server/servertest"
)

// sampling is a bus.Publisher that publishes to an embedded bus and, after every
// 10th delta, fetches the match's snapshot from the gateway twice, as identity and as
// gzip, adding up the bytes on the wire.
type sampling struct {
	*bus.Embedded
	tb              testing.TB
	url             string
	n, samples      int
	identity, gzipB int
}

func (p *sampling) PublishDelta(ctx context.Context, d bus.Delta) error {
	if err := p.Embedded.PublishDelta(ctx, d); err != nil {
		return err
	}
	if p.n++; p.n%10 == 0 {
		u := p.url + "/v1/matches/" + d.Match
		p.identity += len(get(p.tb, "GET", u).body)
		z := get(p.tb, "GET", u, "Accept-Encoding: gzip")
		if z.header.Get("Content-Encoding") != "gzip" {
			p.tb.Fatalf("snapshot of %d bytes sent without gzip", len(z.body))
		}
		p.gzipB += len(z.body)
		p.samples++
	}
	return nil
}

// BenchmarkSnapshotGzip measures what gzip saves on the snapshots of the three real
// matches (Cricsheet), sampled every 10 deltas from the first ball to the result:
//
//	go test -run '^$' -bench BenchmarkSnapshotGzip -benchtime 1x ./server
func BenchmarkSnapshotGzip(b *testing.B) {
	matches, err := ingest.Embedded()
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		eb := bus.NewEmbedded()
		s := servertest.Run(b, server.Options{Bus: eb})
		p := &sampling{Embedded: eb, tb: b, url: servertest.HTTPURL(s)}
		for _, m := range matches {
			if err := ingest.Replay(context.Background(), p, m, ingest.ReplayOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(p.identity)/float64(p.samples), "identity-B/snapshot")
		b.ReportMetric(float64(p.gzipB)/float64(p.samples), "gzip-B/snapshot")
		b.ReportMetric(100*(1-float64(p.gzipB)/float64(p.identity)), "%saved")
		b.Logf("%d snapshots of %d matches: %s identity, %s gzip", p.samples, len(matches), kib(p.identity), kib(p.gzipB))
	}
}

func kib(n int) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }
