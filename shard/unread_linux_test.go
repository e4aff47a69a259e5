package shard

import (
	"net"
	"testing"
	"time"
)

// fdConn is a fakeConn on a real socket, for the kernel queue readers.
type fdConn struct {
	*fakeConn
	fd int
}

func (c fdConn) Fd() int { return c.fd }

// unread sees the bytes a peer sent that nobody has read yet, and 0 once they are read.
func TestUnreadSeesTheKernelReceiveQueue(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	raw, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var gc fdConn
	_ = raw.Control(func(fd uintptr) { gc = fdConn{fakeConn: &fakeConn{room: -1}, fd: int(fd)} })
	if n := unread(gc); n != 0 {
		t.Fatalf("unread = %d before the peer sent anything", n)
	}
	req := "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for unread(gc) != len(req) {
		if time.Now().After(deadline) {
			t.Fatalf("unread = %d, want %d", unread(gc), len(req))
		}
		time.Sleep(time.Millisecond) // polling a kernel counter: nothing to wait on
	}
	buf := make([]byte, 64)
	if _, err := server.Read(buf); err != nil {
		t.Fatal(err)
	}
	if n := unread(gc); n != 0 {
		t.Fatalf("unread = %d after the request was read", n)
	}
}
