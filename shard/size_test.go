package shard

import (
	"testing"
	"unsafe"
)

// The per-connection state is what density is made of: keep it in the 64-byte size
// class. Adding a field here costs every connection of every gateway.
func TestConnFitsSixtyFourBytes(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 64 {
		t.Fatalf("shard.Conn is %d bytes, over the 64-byte size class", n)
	}
}
