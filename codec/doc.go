// Package codec is the server side of WebSocket (RFC 6455) for crease, working directly
// on the bytes a gnet connection has received so far.
//
// It owns three things: the opening handshake (Upgrader.Upgrade turns a complete HTTP
// header block into a 101 answer or a refusal with the status PROTOCOL.md names), the
// parsing of client frames (Reader.Next, one frame per call, with every limit of
// PROTOCOL.md enforced from the frame header before its payload arrives), and the
// encoding of server frames (TextFrame, CloseFrame, PingFrame, PongFrame), which are
// built once and shared read-only by every connection.
//
// Everything here runs on the caller's goroutine, which in the gateway is the event loop
// that owns the connection: nothing blocks, nothing starts a goroutine and nothing holds
// a lock. The functions take the slice from gnet's Conn.Peek and report how many bytes
// they consumed, so the caller Discards exactly those and keeps the rest (a partial
// frame, or the first frames sent right behind the handshake). Client payloads are
// unmasked in place in that slice and returned as sub-slices of it, so reading an
// unfragmented message allocates nothing; a Reader holds a buffer only while a
// fragmented message is being assembled and drops it when the message completes, so an
// idle connection costs nothing here. The handshake is parsed by github.com/gobwas/ws
// over exactly the header bytes; it allocates a little, once per connection. Connection
// and Upgrade are read as RFC 9110 lists first ("Connection: keep-alive, Upgrade", or on
// two lines, "Upgrade: websocket, h2c"), and such a block is rewritten to the one-line
// form gobwas insists on before it reads it.
//
// In OnTraffic: Peek(-1) once, call Next on the unconsumed rest until it returns n == 0,
// use each Payload as it comes, and Discard the total at the end, since the payloads of
// unfragmented messages point into the peeked bytes (see Example).
//
// Bad input never panics: it yields an *HTTPError before the upgrade or a *CloseError
// after it, and the caller answers and closes.
package codec
