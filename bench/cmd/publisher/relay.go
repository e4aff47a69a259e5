package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/rueidis"
)

// relay forwards every message of the crease channels of ms (PUBLISH PREFIX:{ID}, as
// crease ingest publishes them) to pub, in order, until SIGTERM or SIGINT: the way the
// centrifuge baseline of bench/cmd/matchday gets a real match through its own broker.
func relay(redisAddr, prefix string, ms []string, pub func([]msg) (int, int)) error {
	cl, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}, DisableCache: true})
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	channels := make([]string, len(ms))
	match := map[string]string{}
	for i, m := range ms {
		channels[i] = prefix + ":{" + m + "}"
		match[channels[i]] = m
	}
	fmt.Fprintf(os.Stderr, "publisher: relaying %v\n", channels)
	var relayed, failed int
	err = cl.Receive(ctx, cl.B().Subscribe().Channel(channels...).Build(), func(m rueidis.PubSubMessage) {
		_, bad := pub([]msg{{match: match[m.Channel], data: []byte(m.Message)}})
		relayed++
		failed += bad
	})
	fmt.Fprintf(os.Stderr, "publisher: relayed %d messages, %d failed\n", relayed, failed)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
