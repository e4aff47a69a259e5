package redis

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"crease/internal/redistest"
)

// BenchmarkSubscriptionStrategies compares the two ways rueidis offers to hold
// thousands of channels (docs/redis-bus.md records the result): one client.Receive per
// channel, and one Dedicate()d connection with SetPubSubHooks. One iteration subscribes
// 5,000 channels and publishes 100,000 messages over them (~10 s of both cores), so run
// it with -benchtime 1x. It fails if a strategy loses a message.
func BenchmarkSubscriptionStrategies(b *testing.B) {
	for _, strategy := range []string{"receive", "dedicated"} {
		b.Run(strategy, func(b *testing.B) {
			srv := redistest.Start(b)
			for range b.N {
				measureSubscriptions(b, srv, strategy)
			}
		})
	}
}

func measureSubscriptions(t *testing.B, srv *redistest.Server, strategy string) {
	const channels, messages = 5000, 100000
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var confirmed, received atomic.Int64
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	start := time.Now()
	var wg sync.WaitGroup
	onMsg := func(rueidis.PubSubMessage) { received.Add(1) }
	onSub := func(s rueidis.PubSubSubscription) {
		if s.Kind == "subscribe" {
			confirmed.Add(1)
		}
	}
	var release func()
	switch strategy {
	case "receive":
		for i := range channels {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.Receive(rueidis.WithOnSubscriptionHook(ctx, onSub), c.B().Subscribe().Channel(fmt.Sprint("ch", i)).Build(), onMsg)
			}()
		}
	case "dedicated":
		dc, rel := c.Dedicate()
		release = rel
		dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: onMsg, OnSubscription: onSub})
		for lo := 0; lo < channels; lo += 500 {
			chs := make([]string, 0, 500)
			for i := lo; i < lo+500; i++ {
				chs = append(chs, fmt.Sprint("ch", i))
			}
			if err := dc.Do(ctx, dc.B().Subscribe().Channel(chs...).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 60*time.Second, "confirmations", func() bool { return confirmed.Load() == channels })
	subTime := time.Since(start)
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	g1 := runtime.NumGoroutine()

	pub, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	payload := deltaFrame("m1", 1)
	start = time.Now()
	for lo := 0; lo < messages; lo += 1000 {
		cmds := make(rueidis.Commands, 0, 1000)
		for i := lo; i < lo+1000; i++ {
			cmds = append(cmds, pub.B().Publish().Channel(fmt.Sprint("ch", i%channels)).Message(payload).Build())
		}
		for _, r := range pub.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 60*time.Second, "all messages", func() bool { return received.Load() == messages })
	rate := float64(messages) / time.Since(start).Seconds()
	mem := float64(m1.HeapAlloc+m1.StackInuse) - float64(m0.HeapAlloc+m0.StackInuse)
	t.ReportMetric(subTime.Seconds(), "subscribe-s")
	t.ReportMetric(float64(g1-g0)/channels, "goroutines/channel")
	t.ReportMetric(mem/channels, "B/channel")
	t.ReportMetric(rate, "msg/s")
	pub.Close()
	cancel()
	wg.Wait()
	if release != nil {
		release()
	}
	c.Close()
}
