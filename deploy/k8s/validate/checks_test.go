package validate

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// crease's defaults (server.DefaultDrainWindow, DefaultDrainGrace) when the env is unset.
const defaultDrainWindow, defaultDrainGrace = 10 * time.Second, 5 * time.Second

func container(t *testing.T, m manifests) corev1.Container {
	t.Helper()
	cs := m.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "crease" {
		t.Fatalf("the pod must have one container named crease, has %d", len(cs))
	}
	return cs[0]
}

func env(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func duration(t *testing.T, c corev1.Container, name string, def time.Duration) time.Duration {
	t.Helper()
	v, ok := env(c, name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

func port(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port %s is not a container port", p.String())
	return 0
}

// TestDeploymentDrainsProbesAndRunsLocked: readiness on /readyz and liveness on
// /healthz of the HTTP port, a grace period longer than preStop + drain window + grace
// + the shutdown's own waits,
// requests and limits, non-root with a read-only root and a writable /tmp.
func TestDeploymentDrainsProbesAndRunsLocked(t *testing.T) {
	m := load(t)
	pod := m.deployment.Spec.Template.Spec
	c := container(t, m)
	if got := port(t, c, intstr.FromString("ws")); got != 8080 {
		t.Errorf("ws port %d, want 8080 (the image's CREASE_WS_ADDR)", got)
	}
	if got := port(t, c, intstr.FromString("http")); got != 8081 {
		t.Errorf("http port %d, want 8081 (the image's CREASE_HTTP_ADDR)", got)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet of %s", p.name, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || port(t, c, p.probe.HTTPGet.Port) != 8081 {
			t.Errorf("%s probe: GET %s on %s, want %s on the HTTP port", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	// A draining gateway answers /readyz 503 but must not be killed: liveness must give
	// it longer than the drain before it restarts the container.
	window := duration(t, c, "CREASE_DRAIN_WINDOW", defaultDrainWindow)
	grace := duration(t, c, "CREASE_DRAIN_GRACE", defaultDrainGrace)
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if s := c.Lifecycle.PreStop.Sleep; s != nil {
			preStop = time.Duration(s.Seconds) * time.Second
		} else {
			t.Errorf("preStop must be a sleep action (the image has no shell)")
		}
	}
	// After the drain, the gateway's Shutdown waits, each wait bounded, for the last
	// connections, the event loops and the HTTP listener: about 8 s in all. This module
	// does not import the server, so the sum is written here.
	const shutdownWaits = 8 * time.Second
	need := preStop + window + grace + shutdownWaits
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds must exceed preStop %v + drain window %v + grace %v + the shutdown's waits %v (got %v)", preStop, window, grace, shutdownWaits, deref(g))
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okR := c.Resources.Requests[r]
		lim, okL := c.Resources.Limits[r]
		if !okR || !okL || req.Cmp(lim) != 0 {
			t.Errorf("%s: request %v, limit %v; want both, equal (Guaranteed QoS)", r, req.String(), lim.String())
		}
	}
	cpu := c.Resources.Limits[corev1.ResourceCPU]
	if loops, _ := env(c, "CREASE_LOOPS"); loops != cpu.String() {
		t.Errorf("CREASE_LOOPS %q, want the CPU limit %s (one event loop per core)", loops, cpu.String())
	}
	mem := c.Resources.Limits[corev1.ResourceMemory]
	if v, ok := env(c, "GOMEMLIMIT"); !ok {
		t.Errorf("no GOMEMLIMIT")
	} else if q, err := resource.ParseQuantity(strings.TrimSuffix(v, "B")); err != nil {
		t.Errorf("GOMEMLIMIT %q: %v", v, err)
	} else if f := float64(q.Value()) / float64(mem.Value()); f < 0.7 || f > 0.9 {
		t.Errorf("GOMEMLIMIT %s is %.0f%% of the memory limit %s, want ~80%% (deploy/README.md)", v, 100*f, mem.String())
	}

	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatal("pod and container need a securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod: runAsNonRoot %v, runAsUser %v; want true, 65532 (the image's user)", psc.RunAsNonRoot, psc.RunAsUser)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod: seccomp %v, want RuntimeDefault", psc.SeccompProfile)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container: want readOnlyRootFilesystem, no privilege escalation, every capability dropped; got %+v", sc)
	}
	tmp := false
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && vm.MountPath == "/tmp" && !vm.ReadOnly && v.EmptyDir != nil {
				tmp = true
			}
		}
	}
	if !tmp {
		t.Errorf("/tmp must be a writable emptyDir: the gateway keeps a Unix socket in $TMPDIR")
	}
	if s := m.deployment.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update must keep every gateway until its successor is ready (maxUnavailable 0)")
	}
}

// TestSelectorsAndTargetsMatch: the Service, the PDB and the Deployment's own selector
// select the pod template; the Service's target ports are container ports; the HPA
// scales this Deployment on crease_connections.
func TestSelectorsAndTargetsMatch(t *testing.T) {
	m := load(t)
	podLabels := labels.Set(m.deployment.Spec.Template.Labels)
	c := container(t, m)
	if sel := labels.SelectorFromSet(m.service.Spec.Selector); len(m.service.Spec.Selector) == 0 || !sel.Matches(podLabels) {
		t.Errorf("service selector %v does not select the pods %v", m.service.Spec.Selector, podLabels)
	}
	for name, ml := range map[string]map[string]string{
		"deployment": m.deployment.Spec.Selector.MatchLabels,
		"pdb":        m.pdb.Spec.Selector.MatchLabels,
	} {
		if len(ml) == 0 || !labels.SelectorFromSet(ml).Matches(podLabels) {
			t.Errorf("%s selector %v does not select the pods %v", name, ml, podLabels)
		}
	}
	for _, sp := range m.service.Spec.Ports {
		if cp := port(t, c, sp.TargetPort); cp != sp.Port {
			t.Errorf("service port %d -> container port %d: keep them equal (the page and clients use 8080/8081)", sp.Port, cp)
		}
	}
	if m.pdb.Spec.MaxUnavailable == nil || m.pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("pdb: maxUnavailable %v, want 1 (one gateway drains at a time)", m.pdb.Spec.MaxUnavailable)
	}
	ref := m.hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != m.deployment.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("hpa targets %+v, want the Deployment %s", ref, m.deployment.Name)
	}
	if m.hpa.Spec.MinReplicas == nil || *m.hpa.Spec.MinReplicas < 2 || m.hpa.Spec.MaxReplicas < *m.hpa.Spec.MinReplicas {
		t.Errorf("hpa replicas %v..%d: want at least 2 gateways", m.hpa.Spec.MinReplicas, m.hpa.Spec.MaxReplicas)
	}
	found := false
	for _, ms := range m.hpa.Spec.Metrics {
		if ms.Type == autoscalingv2.PodsMetricSourceType && ms.Pods != nil && ms.Pods.Metric.Name == "crease_connections" {
			found = true
			v := ms.Pods.Target.AverageValue
			if ms.Pods.Target.Type != autoscalingv2.AverageValueMetricType || v == nil || v.Value() <= 0 || v.Value() > 25000 {
				t.Errorf("crease_connections target %v, want an average value per pod within 1..25000", v)
			}
		}
	}
	if !found {
		t.Errorf("hpa has no Pods metric crease_connections")
	}
}

// adapterConfig is the part of prometheus-adapter's configuration the rule uses,
// decoded strictly so a misspelt key fails.
type adapterConfig struct {
	Rules []struct {
		SeriesQuery string `json:"seriesQuery"`
		Resources   struct {
			Overrides map[string]struct {
				Resource string `json:"resource"`
			} `json:"overrides"`
		} `json:"resources"`
		Name struct {
			Matches string `json:"matches"`
			As      string `json:"as"`
		} `json:"name"`
		MetricsQuery string `json:"metricsQuery"`
	} `json:"rules"`
}

// TestAdapterRuleServesTheHPAMetric: the prometheus-adapter rule exposes
// crease_connections per pod, summed over the event loops, under the name the HPA asks for.
func TestAdapterRuleServesTheHPAMetric(t *testing.T) {
	m := load(t)
	var cfg adapterConfig
	if err := yaml.UnmarshalStrict([]byte(m.adapter.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("adapter config.yaml: %v", err)
	}
	if len(cfg.Rules) != 1 {
		t.Fatalf("want one rule, got %d", len(cfg.Rules))
	}
	r := cfg.Rules[0]
	if !strings.HasPrefix(r.SeriesQuery, "crease_connections{") || r.Resources.Overrides["pod"].Resource != "pod" || r.Resources.Overrides["namespace"].Resource != "namespace" {
		t.Errorf("rule must select crease_connections with pod and namespace labels: %+v", r)
	}
	re, err := regexp.Compile(r.Name.Matches)
	if err != nil || !re.MatchString("crease_connections") || r.Name.As != "crease_connections" {
		t.Errorf("rule name %+v (%v) must expose crease_connections", r.Name, err)
	}
	if !strings.HasPrefix(r.MetricsQuery, "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)") {
		t.Errorf("metricsQuery %q must sum over the loops by pod", r.MetricsQuery)
	}
}

// safeSysctls are the sysctls Kubernetes allows without kubelet flags
// (kubernetes.io/docs/tasks/administer-cluster/sysctl-cluster), with the release that
// made each safe.
var safeSysctls = map[string]string{
	"kernel.shm_rmid_forced": "1.4", "net.ipv4.ip_local_port_range": "1.4", "net.ipv4.tcp_syncookies": "1.4",
	"net.ipv4.ping_group_range": "1.18", "net.ipv4.ip_unprivileged_port_start": "1.22", "net.ipv4.ip_local_reserved_ports": "1.27",
	"net.ipv4.tcp_keepalive_time": "1.29", "net.ipv4.tcp_fin_timeout": "1.29", "net.ipv4.tcp_keepalive_intvl": "1.29",
	"net.ipv4.tcp_keepalive_probes": "1.29", "net.ipv4.tcp_rmem": "1.32", "net.ipv4.tcp_wmem": "1.32",
}

// TestSysctlsAreSafeAndMatchTheHostSettings: a pod with an unsafe sysctl is refused by
// every kubelet not configured for it, so only safe ones, with deploy/99-crease.conf's
// values (one source for the numbers and their reasons in deploy/sysctl.md).
func TestSysctlsAreSafeAndMatchTheHostSettings(t *testing.T) {
	m := load(t)
	host := map[string]string{}
	f, err := os.Open(filepath.Join(manifestsDir, "..", "99-crease.conf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			host[strings.TrimPrefix(strings.TrimSpace(k), "-")] = strings.Join(strings.Fields(v), " ")
		}
	}
	sysctls := m.deployment.Spec.Template.Spec.SecurityContext.Sysctls
	if len(sysctls) == 0 {
		t.Fatal("no sysctls")
	}
	for _, s := range sysctls {
		if _, ok := safeSysctls[s.Name]; !ok {
			t.Errorf("sysctl %s is not safe in Kubernetes: a kubelet without --allowed-unsafe-sysctls refuses the pod", s.Name)
		}
		if want, ok := host[s.Name]; !ok || want != s.Value {
			t.Errorf("sysctl %s=%q, deploy/99-crease.conf has %q", s.Name, s.Value, want)
		}
	}
}

// TestKustomizationListsTheWorkload: kubectl apply -k deploy/k8s applies every manifest
// but the adapter's rule, which belongs in the adapter's own configuration.
func TestKustomizationListsTheWorkload(t *testing.T) {
	m := load(t)
	data, err := os.ReadFile(filepath.Join(manifestsDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Kind != "Kustomization" || k.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Errorf("kustomization: %s %s", k.APIVersion, k.Kind)
	}
	var want []string
	for _, f := range m.files {
		if f != "prometheus-adapter.yaml" {
			want = append(want, f)
		}
	}
	got := append([]string(nil), k.Resources...)
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("kustomization resources %v, want %v", got, want)
	}
}

// TestEnvVariablesAreCreaseFlags: every CREASE_* variable of the Deployment names a
// flag of `crease serve` (a misspelt variable is silently ignored by the gateway).
func TestEnvVariablesAreCreaseFlags(t *testing.T) {
	m := load(t)
	c := container(t, m)
	cmd := exec.Command("go", "run", "./cmd/crease", "serve", "-h")
	cmd.Dir = filepath.Join(manifestsDir, "..", "..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("crease serve -h: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, mm := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[mm[1]] = true
	}
	if !flags["drain-window"] || !flags["redis"] {
		t.Fatalf("could not read the flags from crease serve -h:\n%s", out)
	}
	if len(c.Args) != 1 || c.Args[0] != "serve" {
		t.Errorf("args %q, want [serve]", c.Args)
	}
	for _, e := range c.Env {
		name, ok := strings.CutPrefix(e.Name, "CREASE_")
		if !ok {
			continue
		}
		if f := strings.ReplaceAll(strings.ToLower(name), "_", "-"); !flags[f] {
			t.Errorf("%s: crease serve has no flag --%s", e.Name, f)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}
