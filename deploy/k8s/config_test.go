package k8s_test

import (
	"bufio"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/policy"
)

// acceptedEnv is every TOKENIZER_* variable the binary reads, from its own help text.
func acceptedEnv(t *testing.T) map[string]bool {
	t.Helper()
	out, _ := exec.Command(binary, "serve", "-h").CombinedOutput()
	names := regexp.MustCompile(`\(env (TOKENIZER_[A-Z0-9_]+)\)`).FindAllStringSubmatch(string(out), -1)
	require.Greater(t, len(names), 20, "serve -h lists the settings:\n%s", out)
	m := map[string]bool{}
	for _, n := range names {
		m[n[1]] = true
	}
	return m
}

// nonTokenizerEnv are the other variables the manifests may set for the binary.
var nonTokenizerEnv = map[string]bool{"GOMEMLIMIT": true}

// pod is the pod template and container under test, with the rendering around it.
type pod struct {
	t    *testing.T
	r    rendering
	spec *corev1.PodSpec
	c    corev1.Container
}

// volumeFor returns the volume mounted at the directory holding file.
func (p pod) volumeFor(file string) *corev1.Volume {
	p.t.Helper()
	for _, m := range p.c.VolumeMounts {
		if m.MountPath == path.Dir(file) && m.SubPath == "" {
			for i := range p.spec.Volumes {
				if p.spec.Volumes[i].Name == m.Name {
					return &p.spec.Volumes[i]
				}
			}
		}
	}
	p.t.Errorf("%s: %s is not on a mounted volume of container %s", p.r.Dir, file, p.c.Name)
	return nil
}

// configMapFile writes the ConfigMap key a mounted file comes from to a temporary file.
func (p pod) configMapFile(file string) string {
	p.t.Helper()
	v := p.volumeFor(file)
	require.NotNil(p.t, v)
	require.NotNil(p.t, v.ConfigMap, "%s: %s is not from a ConfigMap", p.r.Dir, file)
	cm := find[corev1.ConfigMap](p.t, p.r, v.ConfigMap.Name)
	body, ok := cm.Data[path.Base(file)]
	require.True(p.t, ok, "%s: ConfigMap %s has no key %s", p.r.Dir, cm.Name, path.Base(file))
	out := filepath.Join(p.t.TempDir(), path.Base(file))
	require.NoError(p.t, os.WriteFile(out, []byte(body), 0o600))
	return out
}

// exampleSecrets are the Secrets an operator creates for an overlay, from its
// *.env.example files (name of the file before .env.example is the Secret's suffix).
func exampleSecret(t *testing.T, dir, key string) (string, bool) {
	f, err := os.Open(filepath.Join(dir, "database.env.example"))
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// env resolves the container's environment as the kubelet would: literal values,
// Secrets of the rendering, or the overlay's example Secret for those an operator
// creates. TOKENIZER_CONFIG is redirected to a copy of the mounted ConfigMap file.
func (p pod) env(accepted map[string]bool) map[string]string {
	p.t.Helper()
	out := map[string]string{}
	for _, e := range p.c.Env {
		if strings.HasPrefix(e.Name, "TOKENIZER_") {
			assert.True(p.t, accepted[e.Name], "%s: %s is not a setting of the binary", p.r.Dir, e.Name)
		} else {
			assert.True(p.t, nonTokenizerEnv[e.Name], "%s: unexpected variable %s", p.r.Dir, e.Name)
			continue
		}
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if v, ok := p.secretValue(ref.Name, ref.Key); ok {
				out[e.Name] = v
			} else {
				p.t.Errorf("%s: %s: Secret %s key %s is neither rendered nor in an example", p.r.Dir, e.Name, ref.Name, ref.Key)
			}
		default:
			p.t.Errorf("%s: %s: unsupported valueFrom", p.r.Dir, e.Name)
		}
	}
	cfgPath := out["TOKENIZER_CONFIG"]
	require.NotEmpty(p.t, cfgPath, "%s: TOKENIZER_CONFIG names the mounted configuration", p.r.Dir)
	out["TOKENIZER_CONFIG"] = p.configMapFile(cfgPath)
	return out
}

func (p pod) secretValue(name, key string) (string, bool) {
	for _, s := range all[corev1.Secret](p.r) {
		if s.Name == name {
			v, ok := s.Data[key]
			return string(v), ok
		}
	}
	if name == "tokenizer-database" {
		return exampleSecret(p.t, p.r.Dir, key)
	}
	return "", false
}

// load runs the service's own configuration loader on the container's arguments and
// environment, exactly as the binary does at start.
func (p pod) load(accepted map[string]bool) (*config.Config, string) {
	p.t.Helper()
	require.Empty(p.t, p.c.Command, "the image's entrypoint is the tokenizer")
	require.NotEmpty(p.t, p.c.Args)
	env := p.env(accepted)
	cmd := p.c.Args[0]
	cfg, err := config.Load(cmd, p.c.Args[1:], func(k string) string { return env[k] }, io.Discard, nil)
	require.NoError(p.t, err, "%s %s: configuration", p.r.Dir, cmd)
	if cmd == "serve" {
		require.NoError(p.t, cfg.ValidateKeys(), "%s: key settings", p.r.Dir)
	}
	return cfg, cmd
}

func isTokenizer(c corev1.Container) bool {
	return strings.HasPrefix(c.Image, "tokenizer:") || strings.Contains(c.Image, "/phivault/tokenizer")
}

// TestManifestsConfigureTheBinary loads each tokenizer container's configuration with
// the service's loader and checks it against the manifests: environment names, ports,
// probes, mounted files, the policy file (with the policy loader), TLS, Vault login,
// database TLS, and the drain fitting in the grace period.
func TestManifestsConfigureTheBinary(t *testing.T) {
	accepted := acceptedEnv(t)
	for _, r := range renderAll(t) {
		seen := map[string]bool{}
		for _, pt := range podTemplates(r) {
			for _, c := range pt.Spec.Containers {
				if !isTokenizer(c) {
					continue
				}
				p := pod{t: t, r: r, spec: pt.Spec, c: c}
				cfg, cmd := p.load(accepted)
				seen[cmd] = true
				checkDatabaseTLS(p, cfg, r.Dir == "overlays/production")
				if cmd == "serve" {
					checkServe(p, cfg, pt)
				}
			}
		}
		assert.True(t, seen["serve"] && seen["migrate"], "%s: a server and a migrate Job", r.Dir)
	}
}

func checkDatabaseTLS(p pod, cfg *config.Config, production bool) {
	u, err := url.Parse(cfg.Database.URL)
	require.NoError(p.t, err)
	if production {
		assert.Equal(p.t, "verify-full", u.Query().Get("sslmode"), "%s: database TLS", p.r.Dir)
	}
	if root := u.Query().Get("sslrootcert"); root != "" {
		if v := p.volumeFor(root); v != nil {
			assert.NotNil(p.t, v.Secret, "%s: database CA from a Secret", p.r.Dir)
		}
	}
}

func portOf(t *testing.T, addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(port)
	require.NoError(t, err)
	return host, n
}

func checkServe(p pod, cfg *config.Config, pt podTemplate) {
	t := p.t
	named := map[string]int32{}
	for _, cp := range p.c.Ports {
		named[cp.Name] = cp.ContainerPort
	}
	for addr, name := range map[string]string{cfg.GRPCAddr: "grpc", cfg.HTTPAddr: "http", cfg.AdminAddr: "metrics"} {
		host, port := portOf(t, addr)
		assert.Contains(t, []string{"", "0.0.0.0", "::"}, host, "%s: %s listens on every interface", p.r.Dir, name)
		assert.EqualValues(t, port, named[name], "%s: container port %s", p.r.Dir, name)
	}
	svc := find[corev1.Service](t, p.r, "tokenizer")
	want := map[string]int32{"grpc": 9090, "http": 8080, "metrics": 9102}
	for _, sp := range svc.Spec.Ports {
		assert.Equal(t, want[sp.Name], sp.Port, "%s: Service port %s", p.r.Dir, sp.Name)
		assert.Contains(t, named, sp.TargetPort.StrVal, "%s: Service targetPort %s", p.r.Dir, sp.Name)
	}
	assert.Len(t, svc.Spec.Ports, 3)
	for _, pr := range probesOf(p.c) {
		require.NotNil(t, pr.HTTPGet, "%s: HTTP probes", p.r.Dir)
		assert.Equal(t, "metrics", pr.HTTPGet.Port.StrVal, "%s: probes on the admin port", p.r.Dir)
		assert.Contains(t, servedProbePaths, pr.HTTPGet.Path)
	}
	require.NotNil(t, p.c.ReadinessProbe)
	assert.Equal(t, "/readyz", p.c.ReadinessProbe.HTTPGet.Path)

	classes := make([]string, len(cfg.Classes))
	for i, c := range cfg.Classes {
		classes[i] = c.Name
	}
	production := p.r.Dir == "overlays/production"
	assert.Equal(t, !production, cfg.Insecure, "%s: plaintext only in dev", p.r.Dir)
	// The service refuses plaintext with Vault keys unless development mode says so, and
	// plaintext with a policy file (docs/security.md): the dev overlay is development.
	assert.Equal(t, cfg.Insecure, cfg.Dev, "%s: development mode exactly where plaintext is", p.r.Dir)
	if !cfg.Insecure {
		_, err := policy.Load(p.configMapFile(cfg.PolicyFile), classes)
		assert.NoError(t, err, "%s: the policy file loads", p.r.Dir)
	}
	assert.Equal(t, "vault", cfg.Keys.Provider, p.r.Dir)
	if !cfg.Insecure {
		for _, f := range []string{cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile} {
			v := p.volumeFor(f)
			require.NotNil(t, v)
			require.NotNil(t, v.Secret, "%s: %s from a Secret", p.r.Dir, f)
			assert.False(t, v.Secret.Optional != nil && *v.Secret.Optional, "%s: TLS Secret required", p.r.Dir)
			assert.Equal(t, v.Secret.SecretName, certificateSecret(t, p.r), "%s: cert-manager writes the mounted Secret", p.r.Dir)
		}
	}
	if production {
		assert.Equal(t, "kubernetes", cfg.Keys.Vault.AuthMethod)
		v := p.volumeFor(cfg.Keys.Vault.KubernetesTokenFile)
		require.NotNil(t, v)
		require.NotNil(t, v.Projected, "%s: projected service account token", p.r.Dir)
		sat := v.Projected.Sources[0].ServiceAccountToken
		require.NotNil(t, sat)
		assert.Equal(t, "vault", sat.Audience)
		assert.Equal(t, path.Base(cfg.Keys.Vault.KubernetesTokenFile), sat.Path)
		assert.NotNil(t, p.volumeFor(cfg.Keys.Vault.CACert))
	}
	assert.Equal(t, "stdout", cfg.Audit.CheckpointSink)
	grace := *pt.Spec.TerminationGracePeriodSeconds
	preStop := int64(0)
	if l := p.c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		preStop = l.PreStop.Sleep.Seconds
	}
	assert.Greater(t, grace, preStop+int64(cfg.ShutdownTimeout.Seconds()), "%s: grace period longer than the drain", p.r.Dir)
}

func probesOf(c corev1.Container) []*corev1.Probe {
	var out []*corev1.Probe
	for _, pr := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if pr != nil {
			out = append(out, pr)
		}
	}
	return out
}

// servedProbePaths are the admin paths the probes may use; the server test fetches
// every probe path of the manifests from a running service.
var servedProbePaths = []string{"/healthz", "/readyz"}

// certificateSecret is the Secret the overlay's cert-manager Certificate writes.
func certificateSecret(t *testing.T, r rendering) string {
	t.Helper()
	certs := all[certmanagerv1.Certificate](r)
	require.Len(t, certs, 1, "%s: one server Certificate", r.Dir)
	return certs[0].Spec.SecretName
}
