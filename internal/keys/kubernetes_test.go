package keys_test

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
	"github.com/phivault/tokenizer/internal/vault"
)

// TestVaultKubernetesLogin logs in to a real Vault with Kubernetes auth. No Kubernetes
// runs here, so a stand-in answers the one call Vault makes to it (TokenReview), the
// way the API server does; everything else is the real Vault plugin.
func TestVaultKubernetesLogin(t *testing.T) {
	t.Parallel()
	const sa, ns, uid = "tokenizer", "clinical", "5f0c6c4e-0000-4000-8000-000000000001"
	b64 := func(v any) string {
		raw, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	jwt := b64(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + b64(map[string]any{
		"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:" + ns + ":" + sa,
		"kubernetes.io/serviceaccount/namespace":            ns,
		"kubernetes.io/serviceaccount/service-account.name": sa,
		"kubernetes.io/serviceaccount/service-account.uid":  uid,
	}) + "." + base64.RawURLEncoding.EncodeToString([]byte("signature-checked-by-the-token-review"))

	var reviews atomic.Int32
	k8s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			Spec struct{ Token string } `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&review)
		reviews.Add(1)
		ok := r.URL.Path == "/apis/authentication.k8s.io/v1/tokenreviews" && review.Spec.Token == jwt
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
			"status": map[string]any{"authenticated": ok, "user": map[string]any{"username": "system:serviceaccount:" + ns + ":" + sa, "uid": uid}},
		})
	}))
	defer k8s.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k8s.Certificate().Raw})

	v := vaulttest.Start(t)
	v.ServicePolicy(t)
	v.Write(t, "sys/auth/kubernetes", map[string]any{"type": "kubernetes"})
	v.Write(t, "auth/kubernetes/config", map[string]any{
		"kubernetes_host": k8s.URL, "kubernetes_ca_cert": string(caPEM), "token_reviewer_jwt": jwt,
		"disable_local_ca_jwt": true,
	})
	v.Write(t, "auth/kubernetes/role/tokenizer", map[string]any{
		"bound_service_account_names": sa, "bound_service_account_namespaces": ns,
		"token_policies": "tokenizer", "token_ttl": "1h",
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(jwt), 0o600))

	p := newVaultProvider(t, v.Addr, func(c *vault.Config) {
		c.AuthMethod, c.Token, c.KubernetesRole, c.KubernetesTokenFile = "kubernetes", "", "tokenizer", tokenFile
		c.Timeout = 5 * time.Second
	})
	dk, wrapped, err := p.NewDataKey(t.Context())
	require.NoError(t, err)
	got, err := p.Unwrap(t.Context(), wrapped)
	require.NoError(t, err)
	assert.Equal(t, dk, got)
	assert.Positive(t, reviews.Load(), "Vault asked the API server to review the token")

	// A service account token the API server does not vouch for is refused.
	require.NoError(t, os.WriteFile(tokenFile, []byte(jwt[:len(jwt)-4]+"AAAA"), 0o600))
	bad := newVaultProvider(t, v.Addr, func(c *vault.Config) {
		c.AuthMethod, c.Token, c.KubernetesRole, c.KubernetesTokenFile = "kubernetes", "", "tokenizer", tokenFile
	})
	_, _, err = bad.NewDataKey(t.Context())
	require.Error(t, err)
}
