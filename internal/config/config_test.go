package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrecedenceFlagsOverEnvOverFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`
dev: true
grpc_addr: 127.0.0.1:1001
http_addr: 127.0.0.1:1002
admin_addr: 127.0.0.1:1003
limits:
  max_items: 7
request_timeout: 3s
classes:
  - name: mrn
    format: MRN-99999999
`), 0o600))
	env := map[string]string{
		"TOKENIZER_CONFIG":           file,
		"TOKENIZER_HTTP_ADDR":        "127.0.0.1:2002",
		"TOKENIZER_ADMIN_ADDR":       "127.0.0.1:2003",
		"TOKENIZER_LIMITS_MAX_ITEMS": "8",
	}
	c, err := Load("serve", []string{"--admin-addr", "127.0.0.1:3003"}, func(k string) string { return env[k] }, io.Discard, nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:1001", c.GRPCAddr, "file")
	assert.Equal(t, "127.0.0.1:2002", c.HTTPAddr, "env over file")
	assert.Equal(t, "127.0.0.1:3003", c.AdminAddr, "flag over env")
	assert.Equal(t, 8, c.Limits.MaxItems)
	assert.Equal(t, 3*time.Second, c.RequestTimeout)
	require.Len(t, c.Classes, 1, "configured classes replace the development set")
	assert.Equal(t, "local", c.Keys.Provider, "dev mode defaults to the local provider")
}

func TestErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(file, []byte("limits:\n  max_itemz: 3\n"), 0o600))
	_, err := Load("serve", []string{"--config", file}, func(string) string { return "" }, io.Discard, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "max_itemz")

	_, err = Load("serve", []string{"--limits-max-items", "0", "--request-timeout", "soon"}, func(string) string { return "" }, io.Discard, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--request-timeout")

	c, err := Load("serve", nil, func(string) string { return "" }, io.Discard, nil)
	require.NoError(t, err)
	err = c.ValidateKeys()
	require.Error(t, err, "outside dev mode the vault provider needs an address")
	assert.Contains(t, err.Error(), "keys.vault.address")
}

func TestSecretsAreRedacted(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TOKENIZER_DATABASE_URL":         "postgres://svc:hunter2@db:5432/tokenizer",
		"TOKENIZER_KEYS_VAULT_TOKEN":     "hvs.supersecret",
		"TOKENIZER_KEYS_VAULT_SECRET_ID": "approle-secret",
		"TOKENIZER_KEYS_VAULT_ADDRESS":   "https://vault:8200",
	}
	c, err := Load("serve", nil, func(k string) string { return env[k] }, io.Discard, nil)
	require.NoError(t, err)
	out := c.String()
	for _, secret := range []string{"hunter2", "hvs.supersecret", "approle-secret"} {
		assert.NotContains(t, out, secret)
	}
	assert.True(t, strings.Contains(out, "REDACTED"))
	assert.Equal(t, "hvs.supersecret", c.Keys.Vault.Token, "the live config keeps the secret")
}
