package servertest

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// FreeAddr returns a loopback address that was free a moment ago, for a gateway that
// must be restarted on the same address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Listen returns a TCP listener on a free loopback port, as a supervisor holds one to
// hand to each gateway in turn (server.Options.WSListener, LISTEN_FDS); the test's end
// closes it.
func Listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// SendRaw dials addr and writes req (a raw HTTP request) without reading the answer:
// a client that waits in a listening socket's backlog while no gateway serves it. A
// refused dial fails t with refused and the error; the test's end closes the connection.
func SendRaw(t testing.TB, addr, req, refused string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", refused, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// WaitBindable waits until addr can be bound again: a stopped gateway let it go, and a
// new one may listen there.
func WaitBindable(t testing.TB, addr string) {
	t.Helper()
	Eventually(t, 5*time.Second, func() error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s still bound: %w", addr, err)
		}
		return ln.Close()
	})
}
