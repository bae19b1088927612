// Package deploytest checks the deployment files in deploy/: the Helm chart
// (lint, render, strict decoding into the Kubernetes API types), the
// compose file and the systemd units. It is a module of its own so that
// Helm and the Kubernetes libraries stay out of Caracal's go.mod.
package deploytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../helm/caracal"

// rendered is the chart's manifests, decoded strictly by kind.
type rendered struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        map[string]*policyv1.PodDisruptionBudget
	jobs        map[string]*batchv1.Job
	monitors    []map[string]any
}

// strictDecode decodes JSON into v, refusing fields the type does not have
// (a misspelt or misplaced key in a template).
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func loadValues(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	v, err := chartutil.ReadValuesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func lintChart(t *testing.T, vals map[string]any) {
	t.Helper()
	res := action.NewLint().Run([]string{chartDir}, vals)
	for _, m := range res.Messages {
		t.Logf("helm lint: %s", m)
	}
	if len(res.Errors) > 0 || action.HasWarningsOrErrors(res) {
		t.Fatalf("helm lint failed: %v", res.Errors)
	}
}

// renderFiles renders the chart with vals: template name → text.
func renderFiles(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "caracal", Namespace: "caracal", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Render(ch, rv)
}

func render(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	files, err := renderFiles(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r := &rendered{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, jobs: map[string]*batchv1.Job{}}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(files[name], -1) {
			if strings.TrimSpace(doc) == "" || strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d is not YAML: %v\n%s", name, i, err, doc)
			}
			var meta struct{ APIVersion, Kind string }
			if err := json.Unmarshal(js, &meta); err != nil {
				t.Fatal(err)
			}
			where := fmt.Sprintf("%s document %d (%s %s)", name, i, meta.APIVersion, meta.Kind)
			var obj interface{ GetName() string }
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				obj, r.deployments[name+fmt.Sprint(i)] = d, d
			case "v1 Service":
				s := &corev1.Service{}
				obj, r.services[name+fmt.Sprint(i)] = s, s
			case "v1 ConfigMap":
				c := &corev1.ConfigMap{}
				obj, r.configMaps[name+fmt.Sprint(i)] = c, c
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				obj, r.pdbs[name+fmt.Sprint(i)] = p, p
			case "batch/v1 Job":
				j := &batchv1.Job{}
				obj, r.jobs[name+fmt.Sprint(i)] = j, j
			case "monitoring.coreos.com/v1 ServiceMonitor":
				// Not a core type: check its shape by hand.
				var m map[string]any
				if err := json.Unmarshal(js, &m); err != nil {
					t.Fatal(err)
				}
				r.monitors = append(r.monitors, m)
				continue
			default:
				t.Fatalf("%s: unexpected kind", where)
			}
			if err := strictDecode(js, obj); err != nil {
				t.Fatalf("%s does not decode strictly: %v\n%s", where, err, doc)
			}
		}
	}
	// Re-key by object name now that every object decoded.
	r.deployments = byName(r.deployments)
	r.services = byName(r.services)
	r.configMaps = byName(r.configMaps)
	r.pdbs = byName(r.pdbs)
	r.jobs = byName(r.jobs)
	return r
}

func byName[T interface{ GetName() string }](m map[string]T) map[string]T {
	out := make(map[string]T, len(m))
	for _, v := range m {
		out[v.GetName()] = v
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestHelmChart(t *testing.T) {
	for _, tc := range []struct {
		name, values   string
		proxyReplicas  int32
		mcp, tls, mons bool
	}{
		{"default values", "", 2, false, false, false},
		{"multi-replica values", filepath.Join(chartDir, "ci", "multi-replica-values.yaml"), 4, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := loadValues(t, tc.values)
			lintChart(t, vals)
			r := render(t, vals)

			want := []string{"caracal-signer", "caracal-proxy"}
			if tc.mcp {
				want = append(want, "caracal-mcp")
			}
			if len(r.deployments) != len(want) {
				t.Fatalf("deployments %v, want %v", keys(r.deployments), want)
			}
			for _, name := range want {
				d := r.deployments[name]
				if d == nil {
					t.Fatalf("no deployment %s in %v", name, keys(r.deployments))
				}
				checkPod(t, name, d, tc.tls)
			}
			if n := *r.deployments["caracal-signer"].Spec.Replicas; n != 1 {
				t.Errorf("signer replicas = %d, want 1", n)
			}
			if n := *r.deployments["caracal-proxy"].Spec.Replicas; n != tc.proxyReplicas {
				t.Errorf("proxy replicas = %d, want %d", n, tc.proxyReplicas)
			}
			if svc := r.services["caracal"]; svc == nil || svc.Spec.Selector["app.kubernetes.io/component"] != "proxy" {
				t.Errorf("proxy service = %+v", svc)
			}
			if cm := r.configMaps["caracal"]; cm == nil || !strings.Contains(cm.Data["config.yaml"], "providers:") {
				t.Errorf("config map = %+v", cm)
			}
			if len(r.pdbs) == 0 {
				t.Error("no PodDisruptionBudget")
			}
			for _, p := range r.pdbs {
				if p.Spec.MaxUnavailable == nil || p.Spec.Selector.MatchLabels["caracal.dev/role"] != "replica" {
					t.Errorf("PDB %s = %+v", p.Name, p.Spec)
				}
			}
			job := r.jobs["caracal-migrate"]
			if job == nil {
				t.Fatalf("no migration job in %v", keys(r.jobs))
			}
			if hook := job.Annotations["helm.sh/hook"]; !strings.Contains(hook, "pre-upgrade") || !strings.Contains(hook, "pre-install") {
				t.Errorf("migration job hook = %q", hook)
			}
			if args := job.Spec.Template.Spec.Containers[0].Args; strings.Join(args, " ") != "db migrate up" {
				t.Errorf("migration job args = %v", args)
			}
			if (len(r.monitors) == 1) != tc.mons {
				t.Errorf("service monitors = %d, want %v", len(r.monitors), tc.mons)
			}
		})
	}
}

// checkPod checks what every serving pod must have: non-root, read-only
// root, no capabilities, health probes, a grace period above the shutdown
// timeout, and the signing key only on the signer.
func checkPod(t *testing.T, name string, d *appsv1.Deployment, tls bool) {
	t.Helper()
	spec := d.Spec.Template.Spec
	if !labelsMatch(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("%s: selector %v does not match pod labels %v", name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod security context %+v", name, psc)
	}
	c := spec.Containers[0]
	// The endpoint is removed during the preStop sleep, before caracal
	// closes its listener; the grace period covers the sleep and the drain.
	var sleep int64
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 5 {
		t.Errorf("%s: lifecycle %+v, want a 5 s preStop sleep", name, c.Lifecycle)
	} else {
		sleep = c.Lifecycle.PreStop.Sleep.Seconds
	}
	if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds <= sleep+25 {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want above the %d s preStop sleep + 25 s shutdown timeout", name, spec.TerminationGracePeriodSeconds, sleep)
	}
	for _, ic := range append(append([]corev1.Container{}, spec.InitContainers...), c) {
		sc := ic.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s/%s: security context %+v", name, ic.Name, sc)
		}
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: liveness probe %+v", name, c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: readiness probe %+v", name, c.ReadinessProbe)
	}
	if wantScheme := map[bool]corev1.URIScheme{true: corev1.URISchemeHTTPS, false: corev1.URISchemeHTTP}[tls]; c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet.Scheme != wantScheme {
		t.Errorf("%s: probe scheme %s, want %s", name, c.ReadinessProbe.HTTPGet.Scheme, wantScheme)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v", name, c.Resources)
	}
	args := strings.Join(c.Args, " ")
	if !strings.Contains(args, "--shutdown-timeout 25s") || strings.Contains(args, "--tls-cert") != tls {
		t.Errorf("%s: args %q", name, args)
	}
	sign := ""
	for _, e := range c.Env {
		if e.Name == "CARACAL_MERKLE_SIGN" {
			sign = e.Value
		}
		if e.Name == "CARACAL_DATABASE_URL" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s: the database URL is not read from a Secret", name)
		}
	}
	signer := d.Labels["caracal.dev/role"] == "signer"
	if want := map[bool]string{true: "auto", false: "never"}[signer]; sign != want {
		t.Errorf("%s: CARACAL_MERKLE_SIGN = %q, want %q", name, sign, want)
	}
	mountsKeys := false
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "caracal-signing-key" {
			mountsKeys = true
		}
	}
	if mountsKeys != signer {
		t.Errorf("%s: mounts the signing key = %v, is the signer = %v", name, mountsKeys, signer)
	}
}

func labelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

func keys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestHelmGraceBudget: values whose grace period does not cover the preStop
// sleep and the shutdown timeout do not render, naming the values; a
// preStop sleep of 0 renders no lifecycle hook.
func TestHelmGraceBudget(t *testing.T) {
	for _, tc := range []struct {
		name, values, wantErr string
	}{
		{"grace equals the shutdown timeout", "terminationGracePeriodSeconds: 25\npreStopSleepSeconds: 0\n", "terminationGracePeriodSeconds (25) must be greater than preStopSleepSeconds (0) + shutdownTimeoutSeconds (25)"},
		{"grace below the shutdown timeout", "terminationGracePeriodSeconds: 20\n", "terminationGracePeriodSeconds (20)"},
		{"sleep not in the budget", "terminationGracePeriodSeconds: 30\n", "preStopSleepSeconds (5) + shutdownTimeoutSeconds (25)"},
		{"longer drain, default grace", "shutdownTimeoutSeconds: 60\n", "shutdownTimeoutSeconds (60)"},
		{"negative sleep", "preStopSleepSeconds: -1\n", "preStopSleepSeconds is -1"},
		{"mcp only, bad budget", "proxy: {replicas: 0}\nsigner: {enabled: false}\nmcp: {enabled: true}\nterminationGracePeriodSeconds: 10\n", "terminationGracePeriodSeconds (10)"},
		{"enough grace", "terminationGracePeriodSeconds: 31\n", ""},
		{"no sleep", "preStopSleepSeconds: 0\nterminationGracePeriodSeconds: 26\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(tc.values), 0o600); err != nil {
				t.Fatal(err)
			}
			files, err := renderFiles(t, loadValues(t, file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("render error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			hasHook := strings.Contains(files["caracal/templates/deployments.yaml"], "preStop:")
			if want := !strings.Contains(tc.values, "preStopSleepSeconds: 0"); hasHook != want {
				t.Errorf("preStop hook rendered = %v, want %v", hasHook, want)
			}
		})
	}
}
