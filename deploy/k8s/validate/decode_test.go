package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// manifestsDir holds the manifests under test.
const manifestsDir = ".."

// decoder is a strict YAML decoder for the kinds deploy/k8s may hold.
func decoder(t testing.TB) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializerjson.NewSerializerWithOptions(serializerjson.DefaultMetaFactory, scheme, scheme,
		serializerjson.SerializerOptions{Yaml: true, Strict: true})
}

// decodeAll decodes every YAML document of data; the first error ends it.
func decodeAll(dec runtime.Decoder, data []byte) ([]runtime.Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		objs = append(objs, obj)
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}

// manifests are the decoded objects of deploy/k8s, by "Kind/name".
type manifests struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	adapter    *corev1.ConfigMap
	files      []string // the manifest files, kustomization.yaml excluded
}

func load(t *testing.T) manifests {
	t.Helper()
	dec := decoder(t)
	paths, err := filepath.Glob(filepath.Join(manifestsDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	seen := map[string]string{}
	for _, p := range paths {
		if filepath.Base(p) == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, filepath.Base(p))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(dec, data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, obj := range objs {
			var key string
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployment, key = o, "Deployment/"+o.Name
			case *corev1.Service:
				m.service, key = o, "Service/"+o.Name
			case *policyv1.PodDisruptionBudget:
				m.pdb, key = o, "PodDisruptionBudget/"+o.Name
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpa, key = o, "HorizontalPodAutoscaler/"+o.Name
			case *corev1.ConfigMap:
				m.adapter, key = o, "ConfigMap/"+o.Name
			default:
				t.Fatalf("%s: unexpected object %T", p, obj)
			}
			if prev, dup := seen[key]; dup {
				t.Fatalf("%s twice: %s and %s", key, prev, p)
			}
			seen[key] = p
		}
	}
	if m.deployment == nil || m.service == nil || m.pdb == nil || m.hpa == nil || m.adapter == nil {
		t.Fatalf("deploy/k8s must hold a Deployment, a Service, a PodDisruptionBudget, an HPA and the adapter ConfigMap; found %v", seen)
	}
	sort.Strings(m.files)
	return m
}

// TestManifestsDecodeStrictly: every manifest is a known kind and decodes into the
// official types with no unknown or duplicate field.
func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	t.Logf("decoded %v", m.files)
}

// TestBadManifestsAreRefused: the decoder refuses each broken manifest of testdata/bad
// with the error its first line names ("# want: ..."), so the strict check can fail.
func TestBadManifestsAreRefused(t *testing.T) {
	dec := decoder(t)
	paths, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(paths) < 4 {
		t.Fatalf("only %d bad manifests", len(paths))
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		want, ok := strings.CutPrefix(first, "# want: ")
		if !ok {
			t.Fatalf("%s: first line must be # want: <error text>", p)
		}
		_, err = decodeAll(dec, data)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error containing %q", p, err, want)
		}
	}
}
