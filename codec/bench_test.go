package codec

import (
	"testing"

	"github.com/gobwas/ws"
)

// BenchmarkReaderNext parses one unfragmented masked text frame of a typical client
// message. It must not allocate. The copy restores the masked bytes that Next unmasks in
// place, as fresh bytes from the socket would be.
func BenchmarkReaderNext(b *testing.B) {
	benchmarkNext(b, ws.OpText, []byte(`{"op":"subscribe","match":"m123"}`), EventText)
}

// BenchmarkReaderNextLarge parses a 4 KiB binary frame, where unmasking dominates.
func BenchmarkReaderNextLarge(b *testing.B) {
	benchmarkNext(b, ws.OpBinary, make([]byte, MaxClientPayload), EventBinary)
}

func benchmarkNext(b *testing.B, op ws.OpCode, payload []byte, want EventKind) {
	frame := clientFrame(b, true, op, payload)
	buf := make([]byte, len(frame))
	var r Reader
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		copy(buf, frame)
		if ev, _, err := r.Next(buf); err != nil || ev.Kind != want {
			b.Fatal(ev, err)
		}
	}
}

// BenchmarkUpgrade runs a browser-like handshake, once per connection in the gateway.
func BenchmarkUpgrade(b *testing.B) {
	in := []byte("GET /ws?match=m123,m456 HTTP/1.1\r\nHost: scores.example:8080\r\nConnection: Upgrade\r\n" +
		"Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n" +
		"Upgrade: websocket\r\nOrigin: https://scores.example\r\nSec-WebSocket-Version: 13\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
	u := &Upgrader{Check: func(r *Request) error { return nil }}
	out := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := u.Upgrade(in, out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTextFrame encodes a typical delta once, as the fan-out does per message.
func BenchmarkTextFrame(b *testing.B) {
	p := []byte(`{"type":"delta","match":"m123","seq":42,"prio":"high","ts":1764322000123456,"patch":{"score":{"runs":187,"wickets":4},"over":"14.3"}}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = TextFrame(p)
	}
}
