package k8s_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// TestOverlaysDecodeStrictly renders every overlay and checks that each ships what it
// promises; render has already decoded every object strictly into its typed struct.
func TestOverlaysDecodeStrictly(t *testing.T) {
	want := map[string][]string{
		"overlays/dev": {"v1/Namespace", "apps/v1/Deployment", "v1/Service", "v1/ServiceAccount", "batch/v1/Job",
			"policy/v1/PodDisruptionBudget", "v1/ConfigMap", "apps/v1/StatefulSet", "v1/Secret"},
		"overlays/production": {"v1/Namespace", "apps/v1/Deployment", "v1/Service", "v1/ServiceAccount", "batch/v1/Job",
			"policy/v1/PodDisruptionBudget", "v1/ConfigMap", "networking.k8s.io/v1/NetworkPolicy",
			"autoscaling/v2/HorizontalPodAutoscaler", "cert-manager.io/v1/Issuer", "cert-manager.io/v1/Certificate",
			"monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"},
	}
	for _, r := range renderAll(t) {
		var got []string
		for _, o := range r.Objects {
			got = append(got, o.GVK)
		}
		for _, k := range want[r.Dir] {
			assert.Contains(t, got, k, r.Dir)
		}
	}
	dev, prod := renderAll(t)[0], renderAll(t)[1]
	assert.EqualValues(t, 1, *find[appsv1.Deployment](t, dev, "tokenizer").Spec.Replicas)
	d := find[appsv1.Deployment](t, prod, "tokenizer")
	assert.EqualValues(t, 3, *d.Spec.Replicas)
	assert.NotEmpty(t, d.Spec.Template.Spec.TopologySpreadConstraints)
	require.NotNil(t, d.Spec.Template.Spec.Affinity)
	assert.NotEmpty(t, d.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution)
	assert.Regexp(t, `@sha256:[0-9a-f]{64}$`, d.Spec.Template.Spec.Containers[0].Image, "production pins the image by digest")
	for _, n := range all[corev1.Namespace](prod) {
		assert.Equal(t, "restricted", n.Labels["pod-security.kubernetes.io/enforce"])
	}
}

// TestStrictDecodingRejectsUnknownFields shows that a misspelt field fails, for a core
// kind and a CRD kind: the overlays' clean decode means something.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	_, err := decodeStrict("apps/v1/Deployment", []byte(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replica":3}}`))
	assert.ErrorContains(t, err, `unknown field "spec.replica"`)
	_, err = decodeStrict("monitoring.coreos.com/v1/PrometheusRule",
		[]byte(`{"apiVersion":"monitoring.coreos.com/v1","kind":"PrometheusRule","spec":{"groups":[{"name":"g","rules":[{"alert":"A","expr":"up","runbookUrl":"x"}]}]}}`))
	assert.ErrorContains(t, err, "unknown field")
	_, err = decodeStrict("cert-manager.io/v1/Certificate", []byte(`{"spec":{"secretName":"a","dnsName":["x"]}}`))
	assert.ErrorContains(t, err, "unknown field")
	_, err = decodeStrict("example.com/v1/Widget", []byte(`{}`))
	assert.Error(t, err, "a kind without a typed struct is refused")
}

// TestKubectlKustomize renders every overlay with `kubectl kustomize` (a different
// kustomize build than the library's) and expects the same objects.
func TestKubectlKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		require.Empty(t, os.Getenv("CI"), "kubectl is installed on CI machines")
		t.Log("kubectl is not installed: only the library rendering was checked")
		return
	}
	for _, r := range renderAll(t) {
		out, err := exec.Command(kubectl, "kustomize", r.Dir).CombinedOutput()
		require.NoError(t, err, "kubectl kustomize %s:\n%s", r.Dir, out)
		var got []string
		for _, doc := range strings.Split(string(out), "\n---\n") {
			var m struct {
				APIVersion string            `json:"apiVersion"`
				Kind       string            `json:"kind"`
				Metadata   metav1.ObjectMeta `json:"metadata"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &m))
			raw, err := yaml.YAMLToJSON([]byte(doc))
			require.NoError(t, err)
			_, err = decodeStrict(m.APIVersion+"/"+m.Kind, raw)
			require.NoError(t, err, "kubectl kustomize %s: %s/%s", r.Dir, m.Kind, m.Metadata.Name)
			got = append(got, m.APIVersion+"/"+m.Kind+"/"+m.Metadata.Name)
		}
		var want []string
		for _, o := range r.Objects {
			want = append(want, o.GVK+"/"+o.Name)
		}
		slices.Sort(got)
		slices.Sort(want)
		assert.Equal(t, want, got, r.Dir)
	}
}

// podTemplate is a pod spec somewhere in the rendering.
type podTemplate struct {
	Owner string
	Meta  *metav1.ObjectMeta
	Spec  *corev1.PodSpec
}

func podTemplates(r rendering) []podTemplate {
	var out []podTemplate
	for _, d := range all[appsv1.Deployment](r) {
		out = append(out, podTemplate{"Deployment/" + d.Name, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec})
	}
	for _, s := range all[appsv1.StatefulSet](r) {
		out = append(out, podTemplate{"StatefulSet/" + s.Name, &s.Spec.Template.ObjectMeta, &s.Spec.Template.Spec})
	}
	for _, j := range all[batchv1.Job](r) {
		out = append(out, podTemplate{"Job/" + j.Name, &j.Spec.Template.ObjectMeta, &j.Spec.Template.Spec})
	}
	return out
}

// restrictedViolations evaluates a pod against the restricted Pod Security Standard
// with the API server's own library, at the latest policy version.
func restrictedViolations(t *testing.T, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	t.Helper()
	ev, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	require.NoError(t, err)
	var out []string
	for _, res := range ev.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, meta, spec) {
		if !res.Allowed {
			out = append(out, res.ForbiddenReason+": "+res.ForbiddenDetail)
		}
	}
	return out
}

// TestRestrictedPodSecurity checks every pod template of both overlays, PostgreSQL and
// Vault of the dev overlay included.
func TestRestrictedPodSecurity(t *testing.T) {
	for _, r := range renderAll(t) {
		pods := podTemplates(r)
		require.NotEmpty(t, pods)
		for _, p := range pods {
			assert.Empty(t, restrictedViolations(t, p.Meta, p.Spec), "%s %s", r.Dir, p.Owner)
		}
	}
	// The evaluator does refuse: the same tokenizer pod with one setting loosened fails.
	d := find[appsv1.Deployment](t, renderAll(t)[1], "tokenizer")
	spec := d.Spec.Template.Spec.DeepCopy()
	spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
	assert.NotEmpty(t, restrictedViolations(t, &d.Spec.Template.ObjectMeta, spec))
}

// TestSecurityContextBeyondRestricted checks what restricted does not demand but the
// issue does: read-only root filesystems and a non-root numeric user for the tokenizer.
func TestSecurityContextBeyondRestricted(t *testing.T) {
	for _, r := range renderAll(t) {
		for _, p := range podTemplates(r) {
			for _, c := range p.Spec.Containers {
				sc := c.SecurityContext
				require.NotNil(t, sc, "%s %s", p.Owner, c.Name)
				assert.True(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "%s %s: readOnlyRootFilesystem", p.Owner, c.Name)
				assert.NotNil(t, c.Resources.Limits.Memory(), "%s %s: memory limit", p.Owner, c.Name)
			}
			if strings.Contains(p.Owner, "tokenizer") {
				require.NotNil(t, p.Spec.SecurityContext.RunAsUser)
				assert.EqualValues(t, 65532, *p.Spec.SecurityContext.RunAsUser, p.Owner)
				assert.False(t, *p.Spec.AutomountServiceAccountToken, p.Owner)
			}
		}
	}
}
