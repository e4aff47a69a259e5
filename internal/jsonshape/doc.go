// Package jsonshape lists the JSON members of Go struct types as encoding/json writes
// them, for tests that compare hand-written descriptions of the wire (the JSON Schemas
// of schema/, the TypeScript declarations of web/) with the Go types they describe.
// Pure functions; safe for concurrent use.
package jsonshape
