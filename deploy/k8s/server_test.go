package k8s_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
)

// service is a running `tokenizer serve` process.
type service struct {
	cmd               *exec.Cmd
	done              chan struct{} // closed when the process has exited
	err               error         // its exit status, once done is closed
	mu                sync.Mutex
	grpc, admin, logs string
}

// startService runs the binary with mTLS, a policy file and local development keys on
// free loopback ports, against a fresh database, and waits until it is ready.
func startService(t *testing.T, dir string, args ...string) *service {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--dev", "--grpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--keys-local-file", filepath.Join(dir, "kek.hex")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TOKENIZER_DATABASE_URL="+pgtest.NewDatabase(t), "TOKENIZER_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := &service{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				s.mu.Lock()
				s.grpc, s.admin = fmt.Sprint(m["grpc"]), fmt.Sprint(m["admin"])
				s.mu.Unlock()
			}
		}
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	require.Eventually(t, func() bool {
		s.mu.Lock()
		admin := s.admin
		s.mu.Unlock()
		return admin != "" && get(admin, "/readyz") == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "service not ready")
	return s
}

func get(addr, path string) int {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// scrape returns the metric families of /metrics.
func (s *service) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + s.admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value sums a family's samples whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// exported reports whether a metric name (as PromQL names it) is among the families:
// histogram series carry _bucket, _sum and _count suffixes.
func exported(fams map[string]*dto.MetricFamily, name string) bool {
	if fams[name] != nil {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil {
			return fams[base].GetType() == dto.MetricType_HISTOGRAM || fams[base].GetType() == dto.MetricType_SUMMARY
		}
	}
	return false
}

const testPolicy = `principals:
  - id: ehr
    classes:
      ssn: [tokenize, detokenize]
    purposes: [TREAT]
    break_glass: true
    rate_limit: {reveals_per_minute: 1}
`

// TestAlertsReadExportedMetrics runs the service, makes it produce every series the
// alerts read (a break-glass reveal, a reveal anomaly, a failed policy reload, a signed
// checkpoint), scrapes /metrics, and checks each alert metric name against it. It also
// fetches every probe path of the manifests from the running admin port.
func TestAlertsReadExportedMetrics(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "tokenizer test CA")
	server := ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	client := ca.Issue(t, pkitest.Options{CN: "ehr"})
	policyFile := pkitest.Write(t, dir, "policy.yaml", []byte(testPolicy))
	s := startService(t, dir,
		"--tls-cert-file", pkitest.Write(t, dir, "tls.crt", server.CertPEM),
		"--tls-key-file", pkitest.Write(t, dir, "tls.key", server.KeyPEM),
		"--tls-client-ca-file", pkitest.Write(t, dir, "ca.crt", ca.PEM),
		"--policy-file", policyFile,
		"--audit-checkpoint-interval", "1s", "--audit-checkpoint-sink", "none")

	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(ca, &client))))
	require.NoError(t, err)
	defer conn.Close()
	api := tokenizerv1.NewTokenizerServiceClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tok, err := api.Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "123-45-6789", Reference: "r1"}}})
	require.NoError(t, err)
	item := []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token, Reference: "r1"}}
	_, err = api.Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: item})
	require.NoError(t, err)
	// A second reveal within the minute crosses the threshold of 1: an anomaly.
	_, err = api.Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "ETREAT", Justification: "test: unconscious patient", Items: item})
	require.NoError(t, err)
	// A policy file that does not load: the old policy stays, and the failure is counted.
	require.NoError(t, os.WriteFile(policyFile, []byte("principals: [{id: ehr, classes: {nope: [tokenize]}}]\n"), 0o600))

	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		fams = s.scrape(t)
		return value(fams, "tokenizer_policy_reloads_total", map[string]string{"result": "failed"}) >= 1 &&
			value(fams, "tokenizer_audit_last_checkpoint_timestamp_seconds", nil) > 0
	}, 30*time.Second, 200*time.Millisecond, "policy reload failure and a signed checkpoint")

	for _, name := range alertMetricNames(t) {
		assert.True(t, exported(fams, name), "alert metric %s is not exported by the service", name)
	}
	assert.Equal(t, 1.0, value(fams, "tokenizer_break_glass_reveals_total", nil))
	assert.Equal(t, 1.0, value(fams, "tokenizer_reveal_anomalies_total", map[string]string{"principal": "ehr"}))
	assert.Equal(t, 1.0, value(fams, "tokenizer_keys_provider_up", nil))
	assert.Equal(t, 1.0, value(fams, "tokenizer_ready", nil))
	assert.Equal(t, 1.0, value(fams, "tokenizer_audit_checkpoint_interval_seconds", nil))
	leaf := server.TLS.Leaf
	require.NotNil(t, leaf)
	assert.Equal(t, float64(leaf.NotAfter.Unix()), value(fams, "tokenizer_tls_certificate_expiry_timestamp_seconds", nil))
	assert.GreaterOrEqual(t, value(fams, "tokenizer_grpc_request_duration_seconds", nil), 3.0)

	for _, r := range renderAll(t) {
		for _, pt := range podTemplates(r) {
			for _, c := range pt.Spec.Containers {
				for _, pr := range probesOf(c) {
					if isTokenizer(c) {
						assert.Equal(t, http.StatusOK, get(s.admin, pr.HTTPGet.Path), "%s probe %s", r.Dir, pr.HTTPGet.Path)
					}
				}
			}
		}
	}

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.done:
		assert.NoError(t, s.err, "exit status after SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop on SIGTERM")
	}
}

// TestKeyProviderMetricFollowsVaultSeal runs the service against a real Vault dev
// server and seals Vault: tokenizer_keys_provider_up (which the
// TokenizerKeyProviderUnavailable alert reads) drops to 0 and the pod stops being ready.
func TestKeyProviderMetricFollowsVaultSeal(t *testing.T) {
	v := vaulttest.Start(t)
	s := startService(t, t.TempDir(), "--insecure", "--keys-provider", "vault", "--keys-vault-address", v.Addr,
		"--keys-vault-token", vaulttest.RootToken, "--keys-check-interval", "200ms")
	assert.Equal(t, 1.0, value(s.scrape(t), "tokenizer_keys_provider_up", nil))

	require.NoError(t, v.Client.Sys().Seal())
	require.Eventually(t, func() bool {
		fams := s.scrape(t)
		return value(fams, "tokenizer_keys_provider_up", nil) == 0 && value(fams, "tokenizer_ready", nil) == 0
	}, 30*time.Second, 100*time.Millisecond, "key provider down and not ready after sealing Vault")
	assert.Equal(t, http.StatusServiceUnavailable, get(s.admin, "/readyz"))
}
