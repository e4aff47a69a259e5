package schema_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"crease/internal/npmtest"
)

// TestAjvAgrees: ajv (strict mode, draft 2020-12, formats asserted) compiles every
// schema and judges the real traffic (gateway and publish API) and the examples as the Go validator does: the
// traffic and valid.json valid, invalid.json invalid.
func TestAjvAgrees(t *testing.T) {
	tools := npmtest.Tools(t)
	type entry struct {
		Schema   string          `json:"schema"`
		Why      string          `json:"why"`
		Instance json.RawMessage `json:"instance"`
		Valid    bool            `json:"valid"`
	}
	var corpus []entry
	for _, d := range append(traffic(t), apiTraffic(t)...) {
		corpus = append(corpus, entry{d.Schema, d.What, d.Doc, true})
	}
	for _, ex := range examples(t, "valid.json") {
		corpus = append(corpus, entry{ex.Schema, ex.Why, ex.Instance, true})
	}
	for _, ex := range examples(t, "invalid.json") {
		corpus = append(corpus, entry{ex.Schema, ex.Why, ex.Instance, false})
	}
	path := filepath.Join(t.TempDir(), "corpus.json")
	b, _ := json.Marshal(corpus)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(npmtest.Node(t), "testdata/validate.mjs", ".", path, tools).CombinedOutput()
	if err != nil {
		t.Fatalf("validate.mjs: %v\n%s", err, out)
	}
	var r struct {
		Schemas  int               `json:"schemas"`
		Checked  int               `json:"checked"`
		Failures []json.RawMessage `json:"failures"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("validate.mjs: %v: %s", err, out)
	}
	if r.Schemas != len(schemas(t)) || r.Checked != len(corpus) {
		t.Errorf("ajv compiled %d schemas (want %d) and checked %d documents (want %d)", r.Schemas, len(schemas(t)), r.Checked, len(corpus))
	}
	for _, f := range r.Failures {
		t.Errorf("ajv: %s", f)
	}
	t.Logf("ajv checked %d documents against %d schemas", r.Checked, r.Schemas)
}
