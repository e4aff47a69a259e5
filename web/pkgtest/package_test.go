package pkgtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"crease/ingest"
	"crease/internal/jsonshape"
	"crease/internal/npmtest"
)

// TestPackageIsPublishable: the tarball holds exactly the client (its entry and the
// modules it imports), its declarations, the README and the license, and package.json
// says what npm and bundlers need.
func TestPackageIsPublishable(t *testing.T) {
	p := npmtest.Pack(t)
	var names []string
	for name := range p.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"LICENSE", "README.md", "crease-backoff.js", "crease-client.d.ts", "crease-client.js",
		"crease-merge-patch.js", "crease-stream.js", "crease-token.js", "crease-urls.js", "package.json"}
	if !slices.Equal(names, want) {
		t.Errorf("packed files %v, want %v", names, want)
	}
	var pj struct {
		Name         string            `json:"name"`
		Version      string            `json:"version"`
		Private      bool              `json:"private"`
		License      string            `json:"license"`
		Type         string            `json:"type"`
		Main         string            `json:"main"`
		Types        string            `json:"types"`
		Exports      map[string]any    `json:"exports"`
		Engines      map[string]string `json:"engines"`
		Dependencies map[string]string `json:"dependencies"`
		SideEffects  *bool             `json:"sideEffects"`
	}
	if err := json.Unmarshal(p.Files["package.json"], &pj); err != nil {
		t.Fatal(err)
	}
	if pj.Name != "crease-client" || pj.Private || pj.License != "Apache-2.0" || pj.Type != "module" {
		t.Errorf("name %q private %v license %q type %q; want crease-client, public, Apache-2.0, module", pj.Name, pj.Private, pj.License, pj.Type)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(pj.Version) {
		t.Errorf("version %q is not semver", pj.Version)
	}
	if pj.Engines["node"] != ">=20" || len(pj.Dependencies) != 0 || pj.SideEffects == nil || *pj.SideEffects {
		t.Errorf("engines %v, dependencies %v, sideEffects %v; want node >=20, none, false", pj.Engines, pj.Dependencies, pj.SideEffects)
	}
	dot, _ := pj.Exports["."].(map[string]any)
	if dot["types"] != "./crease-client.d.ts" || dot["default"] != "./crease-client.js" || pj.Types != "./crease-client.d.ts" || pj.Main != "./crease-client.js" {
		t.Errorf(`exports["."] %v, types %q, main %q`, dot, pj.Types, pj.Main)
	}
	// "types" must come first in a conditional export, or TypeScript never reads it.
	if ex := p.Files["package.json"][bytes.Index(p.Files["package.json"], []byte(`"exports"`)):]; bytes.Index(ex, []byte(`"types"`)) > bytes.Index(ex, []byte(`"default"`)) {
		t.Errorf(`exports["."] must list "types" before "default"`)
	}
	root := npmtest.Root(t)
	same := map[string]string{"LICENSE": "LICENSE"}
	for _, name := range want {
		if strings.HasSuffix(name, ".js") {
			same[name] = "web/" + name
		}
	}
	for pkgFile, repoFile := range same {
		b, err := os.ReadFile(filepath.Join(root, repoFile))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, p.Files[pkgFile]) {
			t.Errorf("packed %s differs from the repository's %s (web/LICENSE must be a copy of LICENSE)", pkgFile, repoFile)
		}
	}
}

// readmeBlocks are the ts and tsx code blocks of the package README, which the
// consumer type-checks as they are.
func readmeBlocks(t *testing.T, readme []byte) map[string]string {
	t.Helper()
	blocks := map[string]string{}
	re := regexp.MustCompile("(?ms)^```(ts|tsx)\n(.*?)^```")
	for i, m := range re.FindAllSubmatch(readme, -1) {
		blocks[filepath.Join("readme", "block"+string(rune('0'+i))+"."+string(m[1]))] = string(m[2])
	}
	if len(blocks) < 3 {
		t.Fatalf("README has %d ts/tsx blocks, want the usage, Node and React examples", len(blocks))
	}
	return blocks
}

const tsconfig = `{
  "compilerOptions": {
    "strict": true, "noEmit": true, "skipLibCheck": false, "target": "es2022", "lib": ["es2022", "dom"],
    "module": "%s", "moduleResolution": "%s", "jsx": "react-jsx", "types": ["node"],
    "isolatedModules": true, "verbatimModuleSyntax": true, "noUncheckedIndexedAccess": true
  },
  "include": ["*.ts", "*.tsx", "readme/*.ts", "readme/*.tsx"]
}`

// TestTypesCheckForAConsumer: the installed package type-checks with tsc --noEmit
// under Node's module resolution and under a bundler's, on the README's examples (the
// React hook among them) and on a consumer that uses every frame type, in both
// directions; the consumer's @ts-expect-error lines prove the declarations refuse wrong
// uses (an unused one is an error).
func TestTypesCheckForAConsumer(t *testing.T) {
	p := npmtest.Pack(t)
	consumer, err := os.ReadFile("testdata/consumer.ts")
	if err != nil {
		t.Fatal(err)
	}
	files := readmeBlocks(t, p.Files["README.md"])
	files["consumer.ts"] = string(consumer)
	files["tsconfig.json"] = strings.NewReplacer("%s", "nodenext").Replace(tsconfig)
	files["tsconfig.bundler.json"] = strings.Replace(strings.Replace(tsconfig, "%s", "esnext", 1), "%s", "bundler", 1)
	dir := npmtest.Scratch(t, p, files)
	tsc := npmtest.Bin(t, "tsc")
	for _, cfg := range []string{"tsconfig.json", "tsconfig.bundler.json"} {
		cmd := exec.Command(tsc, "-p", cfg)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("tsc -p %s: %v\n%s", cfg, err, out)
		}
	}
}

// TestDeclarationsMatchTheCode: every export of crease-client.js is declared (function
// or class alike) and every declared value exists; the options connect() reads, the
// events it keeps, the client's members and MatchStream's options are the declared ones.
func TestDeclarationsMatchTheCode(t *testing.T) {
	r := readDeclarations(t)
	if len(r.Diagnostics) > 0 {
		t.Errorf("crease-client.d.ts does not compile: %v", r.Diagnostics)
	}
	for _, what := range []string{"values", "options", "events", "client", "streamOptions"} {
		decl, impl := r.Declared[what], r.Implemented[what]
		if len(impl) == 0 {
			t.Errorf("%s: found none in crease-client.js (did its structure change? see testdata/declarations.mjs)", what)
		}
		for _, name := range impl {
			if !slices.Contains(decl, name) {
				t.Errorf("%s: %s is in crease-client.js but not declared in crease-client.d.ts", what, name)
			}
		}
		for _, name := range decl {
			if !slices.Contains(impl, name) {
				t.Errorf("%s: %s is declared in crease-client.d.ts but not in crease-client.js", what, name)
			}
		}
	}
}

// goShapes are the Go types of the match state crease's ingest publishes, by the name
// of their declaration in crease-client.d.ts.
var goShapes = map[string]reflect.Type{
	"MatchState": reflect.TypeFor[ingest.State](), "Score": reflect.TypeFor[ingest.Score](), "Need": reflect.TypeFor[ingest.Need](),
	"Partnership": reflect.TypeFor[ingest.Partnership](), "InningsCard": reflect.TypeFor[ingest.InningsCard](),
	"Extras": reflect.TypeFor[ingest.Extras](), "BatterCard": reflect.TypeFor[ingest.BatterCard](),
	"BowlerCard": reflect.TypeFor[ingest.BowlerCard](), "FallOfWicket": reflect.TypeFor[ingest.FallOfWicket](),
}

// TestStateDeclarationsMatchIngest: MatchState and its parts in crease-client.d.ts have
// exactly the members of ingest's Go types, optional where the Go side omits them (a
// field added to the state is added to the declarations with it).
func TestStateDeclarationsMatchIngest(t *testing.T) {
	r := readDeclarations(t)
	for name, typ := range goShapes {
		want, nullable := jsonshape.Members(typ)
		if len(nullable) > 0 {
			t.Errorf("%v: pointers without omitempty would be sent as null", nullable)
		}
		if got := r.Shapes[name]; !slices.Equal(got, want) {
			t.Errorf("%s: declared %v, ingest.%s has %v", name, got, typ.Name(), want)
		}
	}
}

// declarations is what testdata/declarations.mjs read from the packed package.
type declarations struct {
	Diagnostics []string            `json:"diagnostics"`
	Declared    map[string][]string `json:"declared"`
	Implemented map[string][]string `json:"implemented"`
	Shapes      map[string][]string `json:"shapes"`
	Unions      map[string][]string `json:"unions"`
}

var (
	declOnce sync.Once
	declOut  declarations
	declErr  error
)

// readDeclarations packs the package and runs declarations.mjs on it, once for the tests.
func readDeclarations(t *testing.T) declarations {
	t.Helper()
	p := npmtest.Pack(t)
	tools := npmtest.Tools(t)
	node := npmtest.Node(t)
	declOnce.Do(func() {
		out, err := exec.Command(node, "testdata/declarations.mjs", p.Dir, tools).Output()
		if err != nil {
			declErr = fmt.Errorf("declarations.mjs: %v %s", err, out)
			return
		}
		declErr = json.Unmarshal(out, &declOut)
	})
	if declErr != nil {
		t.Fatal(declErr)
	}
	return declOut
}

// schemaObject is the part of a JSON Schema object the comparison reads.
type schemaObject struct {
	Properties map[string]json.RawMessage `json:"properties"`
	Required   []string                   `json:"required"`
	Items      *schemaObject              `json:"items"`
	Enum       []string                   `json:"enum"`
	Defs       map[string]*schemaObject   `json:"$defs"`
}

// members lists the object's properties, "name?" for those not required, leaving out
// those a schema forbids (false).
func (o *schemaObject) members() []string {
	var out []string
	for name, raw := range o.Properties {
		if string(raw) == "false" {
			continue
		}
		if !slices.Contains(o.Required, name) {
			name += "?"
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func (o *schemaObject) prop(t *testing.T, name string) *schemaObject {
	t.Helper()
	var p schemaObject
	if err := json.Unmarshal(o.Properties[name], &p); err != nil {
		t.Fatalf("property %s: %v", name, err)
	}
	return &p
}

// TestFrameDeclarationsMatchTheSchemas: the declared frames, ops, snapshot and match
// list have the members of schema/ (optional where the schema does not require them),
// and the declared reasons, priorities, error codes and statuses are the schemas' enums.
// The schemas are validated against real traffic (go test ./schema), so this ties the
// declarations to what gateways send.
func TestFrameDeclarationsMatchTheSchemas(t *testing.T) {
	r := readDeclarations(t)
	load := func(name string) *schemaObject {
		b, err := os.ReadFile(filepath.Join(npmtest.Root(t), "schema", name))
		if err != nil {
			t.Fatal(err)
		}
		var o schemaObject
		if err := json.Unmarshal(b, &o); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return &o
	}
	frames, ops, state := load("server-frame.schema.json"), load("client-op.schema.json"), load("state.schema.json")
	for decl, obj := range map[string]*schemaObject{
		"HelloFrame": frames.Defs["hello"], "SubscribedFrame": frames.Defs["subscribed"], "DeltaFrame": frames.Defs["delta"],
		"ResyncFrame": frames.Defs["resync"], "ReconnectFrame": frames.Defs["reconnect"], "ErrorFrame": frames.Defs["error"],
		"SubscribeOp": ops.Defs["subscribe"], "UnsubscribeOp": ops.Defs["unsubscribe"], "AuthOp": ops.Defs["auth"],
		"StreamPosition": ops.Defs["subscribe"].prop(t, "since"),
		"Snapshot":       load("snapshot.schema.json"), "MatchSummary": load("match-list.schema.json").Items,
	} {
		if got, want := r.Shapes[decl], obj.members(); !slices.Equal(got, want) {
			t.Errorf("%s: declared %v, schema %v", decl, got, want)
		}
	}
	for decl, obj := range map[string]*schemaObject{
		"ResyncReason": frames.Defs["resync"].prop(t, "reason"), "DeltaPriority": frames.Defs["delta"].prop(t, "prio"),
		"ErrorCode": frames.Defs["error"].prop(t, "code"), "MatchStatus": state.prop(t, "status"),
	} {
		want := slices.Sorted(slices.Values(obj.Enum))
		if got := r.Unions[decl]; !slices.Equal(got, want) {
			t.Errorf("%s: declared %v, schema enum %v", decl, got, want)
		}
	}
}
