// Command publisher publishes synthetic ~200-byte delta frames through Redis, at a rate
// or as fast as possible, in crease's layout (PUBLISH crease:{ID} with the exact frame
// text) or through centrifuge's Redis broker for the centrifuge baseline.
//
// --target crease-lua goes through crease/bus/redis instead: the atomic
// snapshot+seq+publish script, as ingest does; it continues from the stored seq.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/redis/rueidis"

	"crease/bus"
	busredis "crease/bus/redis"
)

func main() {
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	matches := flag.String("matches", "", "comma-separated match ids (default m0..m{match-count-1})")
	matchCount := flag.Int("match-count", 1, "number of matches when --matches is empty")
	rate := flag.Float64("rate", 0, "deltas per second per match (0: as fast as possible)")
	count := flag.Int("count", 10, "deltas per match (0: until --duration)")
	duration := flag.Duration("duration", 0, "stop after this long (with --rate)")
	seqStart := flag.Uint64("seq-start", 1, "first seq")
	target := flag.String("target", "crease", "crease (PUBLISH crease:{ID}), crease-lua (crease/bus/redis: snapshot+seq+publish) or centrifuge (its Redis broker, channel = match)")
	prefix := flag.String("prefix", "crease", "key prefix for --target crease")
	relayFrom := flag.Bool("relay", false, "forward the messages of the matches' crease channels (as crease ingest publishes them) to --target until SIGTERM, instead of making deltas")
	flag.Parse()

	var ms []string
	if *matches != "" {
		ms = strings.Split(*matches, ",")
	} else {
		for i := 0; i < *matchCount; i++ {
			ms = append(ms, "m"+strconv.Itoa(i))
		}
	}
	pub, closeFn, err := newPublisher(*target, *redisAddr, *prefix)
	var seqBase map[string]uint64
	if err == nil && *target == "crease-lua" {
		seqBase, err = storedSeqs(*redisAddr, *prefix, ms)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
	defer closeFn()
	if *relayFrom {
		if err := relay(*redisAddr, *prefix, ms, pub); err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			os.Exit(1)
		}
		return
	}

	start := time.Now()
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
	}
	var stop time.Time
	if *duration > 0 {
		stop = start.Add(*duration)
	}
	published, errs := 0, 0
	next := start
	buf := make([]byte, 0, 256)
	batch := make([]msg, 0, len(ms))
	for i := 0; *count == 0 || i < *count; i++ {
		if !stop.IsZero() && time.Now().After(stop) {
			break
		}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
		}
		batch = batch[:0]
		for _, m := range ms {
			seq := *seqStart + uint64(i) + seqBase[m]
			buf = frame(buf[:0], m, seq, time.Now().UnixMicro())
			batch = append(batch, msg{match: m, seq: seq, data: append([]byte(nil), buf...)})
		}
		n, e := pub(batch)
		published += n
		errs += e
	}
	el := time.Since(start).Seconds()
	out, _ := json.Marshal(map[string]any{"published": published, "errors": errs, "elapsed_s": el, "per_s": float64(published) / el, "frame_bytes": len(buf)})
	fmt.Println(string(out))
	if errs > 0 {
		os.Exit(1)
	}
}

type msg struct {
	match string
	seq   uint64
	data  []byte
}

// benchEpoch is the stream epoch of every benchmark match (PROTOCOL.md "Stream position").
const benchEpoch = "bench"

// frame appends a delta frame of about 200 bytes; the patch looks like a real ball.
func frame(b []byte, match string, seq uint64, ts int64) []byte {
	runs := 100 + seq%250
	b = append(b, `{"type":"delta","match":"`...)
	b = append(b, match...)
	b = append(b, `","epoch":"`+benchEpoch+`","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"prio":"normal","ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"patch":{"score":{"runs":`...)
	b = strconv.AppendUint(b, runs, 10)
	b = append(b, `,"wickets":`...)
	b = strconv.AppendUint(b, seq%10, 10)
	b = append(b, `},"over":"`...)
	b = strconv.AppendUint(b, (seq/6)%50, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, seq%6, 10)
	b = append(b, `","striker":{"name":"A. Batter","runs":`...)
	b = strconv.AppendUint(b, seq%120, 10)
	b = append(b, `},"last":"1"}}`...)
	return b
}

func newPublisher(target, addr, prefix string) (func([]msg) (int, int), func(), error) {
	switch target {
	case "crease":
		cl, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
		if err != nil {
			return nil, nil, err
		}
		ctx := context.Background()
		cmds := make(rueidis.Commands, 0, 64)
		return func(batch []msg) (int, int) {
			// One pipeline per round keeps per-match order and costs one round trip.
			cmds = cmds[:0]
			for _, m := range batch {
				cmds = append(cmds, cl.B().Publish().Channel(prefix+":{"+m.match+"}").Message(rueidis.BinaryString(m.data)).Build())
			}
			ok, bad := 0, 0
			for _, r := range cl.DoMulti(ctx, cmds...) {
				if r.Error() != nil {
					bad++
				} else {
					ok++
				}
			}
			return ok, bad
		}, cl.Close, nil
	case "crease-lua":
		b, err := busredis.New(busredis.Options{Addrs: []string{addr}, Prefix: prefix})
		if err != nil {
			return nil, nil, err
		}
		ctx := context.Background()
		return func(batch []msg) (int, int) {
			ok, bad := 0, 0
			for _, m := range batch {
				// The state is what a client would hold: here simply the last patch.
				d := bus.Delta{Match: m.match, Title: m.match, Epoch: benchEpoch, Seq: m.seq, State: patchOf(m.data), Frame: m.data}
				if err := b.PublishDelta(ctx, d); err != nil {
					fmt.Fprintln(os.Stderr, "publisher:", err)
					bad++
				} else {
					ok++
				}
			}
			return ok, bad
		}, func() { _ = b.Close() }, nil
	case "centrifuge":
		node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelError})
		if err != nil {
			return nil, nil, err
		}
		shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: addr})
		if err != nil {
			return nil, nil, err
		}
		broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{Shards: []*centrifuge.RedisShard{shard}})
		if err != nil {
			return nil, nil, err
		}
		node.SetBroker(broker)
		if err := node.Run(); err != nil {
			return nil, nil, err
		}
		return func(batch []msg) (int, int) {
				ok, bad := 0, 0
				for _, m := range batch {
					if _, err := node.Publish(m.match, m.data); err != nil {
						bad++
					} else {
						ok++
					}
				}
				return ok, bad
			}, func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = node.Shutdown(ctx)
			}, nil
	}
	return nil, nil, fmt.Errorf("unknown --target %q", target)
}

// storedSeqs returns the stored seq of each match (0 if none), so that a run against a
// Redis that served an earlier run continues where it stopped instead of conflicting.
func storedSeqs(addr, prefix string, ms []string) (map[string]uint64, error) {
	b, err := busredis.New(busredis.Options{Addrs: []string{addr}, Prefix: prefix})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	out := map[string]uint64{}
	for _, m := range ms {
		s, err := b.Snapshot(context.Background(), m)
		if err == nil {
			out[m] = s.Seq
		}
	}
	return out, nil
}

func patchOf(frame []byte) json.RawMessage {
	i := strings.Index(string(frame), `"patch":`)
	if i < 0 {
		return json.RawMessage("{}")
	}
	p := frame[i+len(`"patch":`):]
	return json.RawMessage(p[:len(p)-1])
}
