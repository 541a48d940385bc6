package k8s_test

import (
	"fmt"
	"reflect"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// overlays are the deployable kustomizations.
var overlays = []string{"overlays/dev", "overlays/production"}

// kinds maps apiVersion/kind to the typed struct each object must decode into. A kind
// missing here fails the test: every object the overlays ship is checked.
var kinds = map[string]reflect.Type{
	"v1/ConfigMap":                            reflect.TypeFor[corev1.ConfigMap](),
	"v1/Namespace":                            reflect.TypeFor[corev1.Namespace](),
	"v1/Secret":                               reflect.TypeFor[corev1.Secret](),
	"v1/Service":                              reflect.TypeFor[corev1.Service](),
	"v1/ServiceAccount":                       reflect.TypeFor[corev1.ServiceAccount](),
	"apps/v1/Deployment":                      reflect.TypeFor[appsv1.Deployment](),
	"apps/v1/StatefulSet":                     reflect.TypeFor[appsv1.StatefulSet](),
	"batch/v1/Job":                            reflect.TypeFor[batchv1.Job](),
	"policy/v1/PodDisruptionBudget":           reflect.TypeFor[policyv1.PodDisruptionBudget](),
	"networking.k8s.io/v1/NetworkPolicy":      reflect.TypeFor[networkingv1.NetworkPolicy](),
	"autoscaling/v2/HorizontalPodAutoscaler":  reflect.TypeFor[autoscalingv2.HorizontalPodAutoscaler](),
	"cert-manager.io/v1/Issuer":               reflect.TypeFor[certmanagerv1.Issuer](),
	"cert-manager.io/v1/Certificate":          reflect.TypeFor[certmanagerv1.Certificate](),
	"monitoring.coreos.com/v1/ServiceMonitor": reflect.TypeFor[monitoringv1.ServiceMonitor](),
	"monitoring.coreos.com/v1/PrometheusRule": reflect.TypeFor[monitoringv1.PrometheusRule](),
}

// object is one rendered manifest, decoded.
type object struct {
	GVK, Name string
	JSON      []byte
	Typed     any // a pointer to the struct from kinds
}

// rendering is one overlay's output.
type rendering struct {
	Dir     string
	Objects []object
}

// decodeStrict decodes an object's JSON into its typed struct; unknown or duplicate
// fields and case-mismatched keys are errors, as with kubectl's strict field validation.
func decodeStrict(gvk string, raw []byte) (any, error) {
	typ, ok := kinds[gvk]
	if !ok {
		return nil, fmt.Errorf("%s: no typed struct for this kind", gvk)
	}
	v := reflect.New(typ).Interface()
	strict, err := kjson.UnmarshalStrict(raw, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk, err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %v", gvk, strict)
	}
	return v, nil
}

// render runs kustomize (the library kubectl embeds) on dir and decodes every object.
func render(t *testing.T, dir string) rendering {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(t, err, "kustomize %s", dir)
	out := rendering{Dir: dir}
	for _, r := range rm.Resources() {
		raw, err := r.MarshalJSON()
		require.NoError(t, err)
		gvk := r.GetApiVersion() + "/" + r.GetKind()
		typed, err := decodeStrict(gvk, raw)
		require.NoError(t, err, "%s %s/%s", dir, gvk, r.GetName())
		out.Objects = append(out.Objects, object{GVK: gvk, Name: r.GetName(), JSON: raw, Typed: typed})
	}
	return out
}

// renderAll renders every overlay once per test binary.
var renderAll = func() func(t *testing.T) []rendering {
	var cache []rendering
	return func(t *testing.T) []rendering {
		t.Helper()
		if cache == nil {
			for _, dir := range overlays {
				cache = append(cache, render(t, dir))
			}
		}
		return cache
	}
}()

// all returns the objects of type T.
func all[T any](r rendering) []*T {
	var out []*T
	for _, o := range r.Objects {
		if v, ok := o.Typed.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// find returns the object of type T named name, or fails.
func find[T any](t *testing.T, r rendering, name string) *T {
	t.Helper()
	for _, o := range r.Objects {
		if v, ok := o.Typed.(*T); ok && o.Name == name {
			return v
		}
	}
	t.Fatalf("%s: no %T named %s", r.Dir, *new(T), name)
	return nil
}
