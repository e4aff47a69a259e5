// Command crease is the WebSocket fan-out gateway for live sports: `crease demo`,
// `crease serve`, `crease ingest` and `crease bench`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `crease: a WebSocket fan-out gateway for live sports.

Usage:
  crease demo     gateway + in-process bus + real matches replaying; prints the URLs
  crease serve    the gateway (--redis ADDR for the Redis bus, embedded without it)
  crease ingest   replay match files onto a bus (--redis ADDR, --match FILE, --speed N)
  crease bench    the benchmark harness (writes BENCHMARKS.md)
  crease healthcheck  exit 0 when this host's gateway answers /healthz (for containers)

Run "crease <command> -h" for the flags of a command. Every flag is also an
environment variable CREASE_<NAME>, e.g. CREASE_WS_ADDR=:9000.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "demo":
		err = runDemo(ctx, os.Args[2:])
	case "serve":
		err = runServe(ctx, os.Args[2:])
	case "ingest":
		err = runIngest(ctx, os.Args[2:])
	case "bench":
		err = runBench(ctx, os.Args[2:])
	case "healthcheck":
		err = runHealthcheck(ctx, os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "crease: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
