// Command bare runs the memory floor server of package bare.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/panjf2000/gnet/v2"

	"crease/bench/bare"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	_ = flag.String("redis", "", "ignored: bare never publishes")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops")
	flag.Parse()
	fmt.Fprintf(os.Stderr, "bare: pid %d listening on %s\n", os.Getpid(), *addr)
	err := gnet.Run(&bare.Server{}, "tcp://"+*addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(*loops), gnet.WithReuseAddr(true))
	fmt.Fprintln(os.Stderr, "bare:", err)
	os.Exit(1)
}
