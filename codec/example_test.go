package codec_test

import (
	"fmt"

	"crease/codec"
)

// The OnTraffic shape: Peek everything, upgrade, Discard exactly the header bytes, then
// parse the frames that came right behind the handshake in the same call.
func Example() {
	in := []byte("GET /ws?match=m123 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" +
		// A masked text frame "hi" (mask 1 2 3 4) and the first byte of the next frame.
		"\x81\x82\x01\x02\x03\x04\x69\x6b\x81")

	u := &codec.Upgrader{}
	n, resp, req, err := u.Upgrade(in, nil)
	if err != nil {
		fmt.Println("refused:", err) // write resp, then close
		return
	}
	fmt.Printf("upgraded %v, %d response bytes\n", req.Matches, len(resp))
	in = in[n:] // c.Discard(n)

	var r codec.Reader // one per connection, zero value ready
	for {
		ev, n, err := r.Next(in)
		if err != nil {
			_ = err.(*codec.CloseError).Frame() // write it, then close
			return
		}
		if n == 0 {
			break // the rest is a partial frame: keep it for the next OnTraffic
		}
		in = in[n:] // advance; c.Discard the total once the payloads are used
		fmt.Printf("%s %q\n", ev.Kind, ev.Payload)
	}
	fmt.Printf("%d byte(s) kept\n", len(in))
	// Output:
	// upgraded [m123], 129 response bytes
	// text "hi"
	// 1 byte(s) kept
}
