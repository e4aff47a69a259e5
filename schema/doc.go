// Package schema holds the JSON Schemas (draft 2020-12) of crease's wire contract, in
// this directory: see README.md. The package has no code; its tests validate real
// traffic of a replayed match (every frame type, client ops, snapshots, the match list,
// every intermediate match state, the publish API bodies built from real Cricsheet
// files) with github.com/santhosh-tekuri/jsonschema and, under Node, with ajv, together
// with examples that must be refused.
package schema
