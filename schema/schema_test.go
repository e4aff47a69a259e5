package schema_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"crease/ingest"
	"crease/internal/jsonshape"
	"crease/wire"
)

var (
	compileOnce sync.Once
	compiled    map[string]*jsonschema.Schema
	compileErr  error
)

// schemas compiles every *.schema.json of this directory once, with format assertions.
func schemas(t testing.TB) map[string]*jsonschema.Schema {
	t.Helper()
	compileOnce.Do(func() {
		names, err := filepath.Glob("*.schema.json")
		if err != nil || len(names) == 0 {
			compileErr = err
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		compiled = map[string]*jsonschema.Schema{}
		for _, n := range names {
			s, err := c.Compile(n)
			if err != nil {
				compileErr = err
				return
			}
			compiled[n] = s
		}
	})
	if compileErr != nil || len(compiled) == 0 {
		t.Fatalf("compiling the schemas: %v", compileErr)
	}
	return compiled
}

// validate checks one JSON text against the named schema.
func validate(t testing.TB, schema string, doc []byte) error {
	t.Helper()
	s, ok := schemas(t)[schema]
	if !ok {
		t.Fatalf("no schema %s", schema)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("%s: not JSON: %v: %s", schema, err, doc)
	}
	return s.Validate(inst)
}

// example is one entry of testdata/valid.json or testdata/invalid.json.
type example struct {
	Schema   string          `json:"schema"`
	Why      string          `json:"why"`
	Instance json.RawMessage `json:"instance"`
}

func examples(t *testing.T, file string) []example {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var ex []example
	if err := json.Unmarshal(b, &ex); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return ex
}

// TestExamples: the examples of testdata/valid.json pass, and every one of
// testdata/invalid.json is refused; every schema has refused examples.
func TestExamples(t *testing.T) {
	refused := map[string]int{}
	for _, ex := range examples(t, "valid.json") {
		if err := validate(t, ex.Schema, ex.Instance); err != nil {
			t.Errorf("%s (%s): refused: %v", ex.Schema, ex.Why, err)
		}
	}
	for _, ex := range examples(t, "invalid.json") {
		if err := validate(t, ex.Schema, ex.Instance); err == nil {
			t.Errorf("%s (%s): accepted %s", ex.Schema, ex.Why, ex.Instance)
		}
		refused[ex.Schema]++
	}
	for name := range schemas(t) {
		if refused[name] == 0 {
			t.Errorf("%s has no example it must refuse in testdata/invalid.json", name)
		}
	}
}

// TestEveryFileIsASchema: each file declares draft 2020-12, a title and a description.
func TestEveryFileIsASchema(t *testing.T) {
	for name := range schemas(t) {
		b, _ := os.ReadFile(name)
		var head struct {
			Schema      string `json:"$schema"`
			Title       string `json:"title"`
			Description string `json:"description"`
		}
		if err := json.Unmarshal(b, &head); err != nil || head.Schema != "https://json-schema.org/draft/2020-12/schema" || head.Title == "" || head.Description == "" {
			t.Errorf("%s: $schema %q, title %q, description %d chars (%v)", name, head.Schema, head.Title, len(head.Description), err)
		}
	}
}

// schemaDoc is the part of a schema file the Go-type comparisons read.
type schemaDoc struct {
	Properties map[string]json.RawMessage `json:"properties"`
	Required   []string                   `json:"required"`
	Defs       map[string]schemaDoc       `json:"$defs"`
}

func readDoc(t *testing.T, name string) schemaDoc {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var d schemaDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func members(typ reflect.Type) []string {
	m, _ := jsonshape.Members(typ)
	return m
}

// schemaMembers lists a schema object's properties, "?" marking those not required.
func schemaMembers(d schemaDoc) []string {
	var out []string
	for name := range d.Properties {
		if !slices.Contains(d.Required, name) {
			name += "?"
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// TestStateSchemaMatchesIngest: state.schema.json has exactly the members of ingest's
// Go types, required where the Go side always sends them. A field added to the state is
// added to the schema with it.
func TestStateSchemaMatchesIngest(t *testing.T) {
	d := readDoc(t, "state.schema.json")
	sub := func(name string) schemaDoc {
		var s schemaDoc
		if err := json.Unmarshal(d.Properties[name], &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	inn := d.Defs["innings"]
	var extras schemaDoc
	_ = json.Unmarshal(inn.Properties["extras"], &extras)
	for name, c := range map[string]struct {
		doc schemaDoc
		typ reflect.Type
	}{
		"state":       {d, reflect.TypeFor[ingest.State]()},
		"score":       {d.Defs["score"], reflect.TypeFor[ingest.Score]()},
		"need":        {sub("need"), reflect.TypeFor[ingest.Need]()},
		"partnership": {sub("partnership"), reflect.TypeFor[ingest.Partnership]()},
		"innings":     {inn, reflect.TypeFor[ingest.InningsCard]()},
		"extras":      {extras, reflect.TypeFor[ingest.Extras]()},
		"batter":      {d.Defs["batter"], reflect.TypeFor[ingest.BatterCard]()},
		"bowler":      {d.Defs["bowler"], reflect.TypeFor[ingest.BowlerCard]()},
		"fow":         {d.Defs["fow"], reflect.TypeFor[ingest.FallOfWicket]()},
	} {
		if got, want := schemaMembers(c.doc), members(c.typ); !slices.Equal(got, want) {
			t.Errorf("%s: schema %v, ingest.%s %v", name, got, c.typ.Name(), want)
		}
	}
}

// TestDeliverySchemaMatchesIngest: the top level of publish-delivery.schema.json is
// ingest.BallPost, the body the publish API decodes.
func TestDeliverySchemaMatchesIngest(t *testing.T) {
	d := readDoc(t, "publish-delivery.schema.json")
	got := schemaMembers(d)
	want := members(reflect.TypeFor[ingest.BallPost]())
	// The Go struct cannot say which members the API requires; compare the names.
	strip := func(ss []string) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = strings.TrimSuffix(s, "?")
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(strip(got), strip(want)) {
		t.Errorf("publish-delivery: schema %v, ingest.BallPost %v", strip(got), strip(want))
	}
}

// TestErrorCodesMatchWire: the `error` frame's code enum is exactly wire.ErrorCodes,
// every code the gateway sends (the schema once left out unauthorized).
func TestErrorCodesMatchWire(t *testing.T) {
	var enum []string
	for _, c := range wire.ErrorCodes() {
		enum = append(enum, string(c))
		doc := []byte(`{"type":"error","code":"` + string(c) + `","message":"m"}`)
		if err := validate(t, "server-frame.schema.json", doc); err != nil {
			t.Errorf("code %s: %v", c, err)
		}
	}
	var code struct {
		Enum []string `json:"enum"`
	}
	if err := json.Unmarshal(readDoc(t, "server-frame.schema.json").Defs["error"].Properties["code"], &code); err != nil {
		t.Fatal(err)
	}
	got := code.Enum
	slices.Sort(got)
	slices.Sort(enum)
	if !slices.Equal(got, enum) {
		t.Fatalf("schema error codes %v, wire.ErrorCodes %v", got, enum)
	}
}
