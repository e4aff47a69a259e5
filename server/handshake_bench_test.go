package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/panjf2000/gnet/v2"

	"crease/bus"
	"crease/shard"
)

// benchLoop is a gnet.EventLoop that runs nothing: the handshake path needs none of it.
type benchLoop struct{ gnet.EventLoop }

func (benchLoop) Execute(context.Context, gnet.Runnable) error { return nil }

// benchConn is a gnet.Conn holding one request; Write is a real write(2) on a loopback
// TCP socket (drained by a goroutine), as gnet's, so a handshake's writes cost what they
// cost on a loop. Methods the path does not use panic (nil embedded interface).
type benchConn struct {
	gnet.Conn
	loop gnet.EventLoop
	fd   int
	in   []byte
	ctx  any
	n    *int // writes
}

var benchAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}

func (c *benchConn) Peek(n int) ([]byte, error) {
	if n < 0 || n > len(c.in) {
		return c.in, nil
	}
	return c.in[:n], nil
}
func (c *benchConn) Discard(n int) (int, error) {
	if n <= 0 || n > len(c.in) {
		n = len(c.in)
	}
	c.in = c.in[n:]
	return n, nil
}
func (c *benchConn) InboundBuffered() int  { return len(c.in) }
func (c *benchConn) OutboundBuffered() int { return 0 }
func (c *benchConn) Write(p []byte) (int, error) {
	*c.n++
	_, _ = syscall.Write(c.fd, p)
	return len(p), nil
}
func (c *benchConn) Context() any              { return c.ctx }
func (c *benchConn) SetContext(v any)          { c.ctx = v }
func (c *benchConn) EventLoop() gnet.EventLoop { return c.loop }
func (c *benchConn) LocalAddr() net.Addr       { return benchAddr }
func (c *benchConn) RemoteAddr() net.Addr      { return benchAddr }
func (c *benchConn) Close() error              { return nil }
func (c *benchConn) SetLinger(int) error       { return nil }
func (c *benchConn) Fd() int                   { return c.fd }

// processCPU is the user and system CPU time of the process so far, in ns: less
// disturbed than wall time by the other work on a shared machine. It includes the
// drain of the loopback socket's far end (the kernel's receive side).
func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// loopbackFD returns the descriptor of one end of a loopback TCP connection whose other
// end is drained until the benchmark ends.
func loopbackFD(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	out, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	in, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, in) }()
	b.Cleanup(func() { out.Close(); in.Close() })
	raw, err := out.(*net.TCPConn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var fd int
	_ = raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// BenchmarkHandshake is the gateway's side of one connection of a reconnect storm, on
// its loop: OnOpen, the upgrade request with a subscription at connect time (101, hello,
// subscribed), and OnClose, on a match the loop already has subscribers of. The writes
// are real syscalls on a loopback socket; the client side is not measured.
func BenchmarkHandshake(b *testing.B) {
	for _, tc := range []struct {
		name string
		jwt  bool
	}{{"plain", false}, {"jwt", true}} {
		b.Run(tc.name, func(b *testing.B) {
			opts := Options{Bus: bus.NewEmbedded(), Loops: 1, Logger: slog.New(slog.DiscardHandler)}
			path := "/ws?match=m1"
			if tc.jwt {
				opts.JWTSecret = []byte("bench-secret")
				tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
					"exp": time.Now().Add(time.Hour).Unix(), "matches": []string{"m1", "m2"},
				}).SignedString(opts.JWTSecret)
				if err != nil {
					b.Fatal(err)
				}
				path += "&token=" + tok
			}
			s, err := New(opts)
			if err != nil {
				b.Fatal(err)
			}
			h := &handler{s: s}
			loop := benchLoop{}
			fd := loopbackFD(b)
			req := []byte("GET " + path + " HTTP/1.1\r\nHost: crease.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://crease.example\r\n\r\n")
			writes := 0
			open := func() *benchConn {
				c := &benchConn{loop: loop, fd: fd, in: req, n: &writes}
				h.OnOpen(c)
				h.OnTraffic(c)
				return c
			}
			// Another subscriber keeps the match's interest on, as in a storm.
			anchor := open()
			if sc, ok := anchor.ctx.(*shard.Conn); !ok || sc.State() != shard.StateOpen || len(anchor.in) != 0 {
				b.Fatalf("the handshake did not complete: %T %v", anchor.ctx, anchor.in)
			}
			writes = 0
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for range b.N {
				c := open()
				h.OnClose(c, nil)
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
			h.OnClose(anchor, nil)
		})
	}
}
