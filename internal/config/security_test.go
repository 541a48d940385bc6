package config_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/config"
)

// Issue 10, finding 3: contradictory or unsafe settings are refused at start with a
// message naming them, instead of one silently winning.
func TestUnsafeConfigurationsAreRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The repository's development file: plaintext, every caller "dev".
	devFile := filepath.Join(dir, "tokenizer.yaml")
	require.NoError(t, os.WriteFile(devFile, []byte("dev: true\ninsecure: true\n"), 0o600))
	tlsFlags := []string{"--tls-cert-file", "s.crt", "--tls-key-file", "s.key", "--tls-client-ca-file", "ca.pem"}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"insecure file plus TLS and policy flags", append([]string{"--config", devFile, "--policy-file", "p.yaml"}, tlsFlags...),
			[]string{"insecure: contradicts tls.cert_file", "insecure: contradicts policy_file"}},
		{"insecure with the vault provider", []string{"--insecure", "--keys-provider", "vault"},
			[]string{"insecure: refused with keys.provider=vault", "--dev"}},
		{"insecure without dev defaults to vault", []string{"--insecure"},
			[]string{"insecure: refused with keys.provider=vault"}},
		{"TLS without a policy file", tlsFlags, []string{"policy_file: required with tls.*"}},
		{"bad trusted proxy", []string{"--trusted-proxies", "10.0.0.0/8, not-a-cidr"}, []string{"trusted_proxies:", "not-a-cidr"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load("serve", tc.args, func(string) string { return "" }, io.Discard, nil)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	// What stays allowed: insecure development, and mTLS with a policy.
	for _, args := range [][]string{
		{"--config", devFile},
		{"--insecure", "--dev"},
		append([]string{"--policy-file", "p.yaml"}, tlsFlags...),
	} {
		c, err := config.Load("serve", args, func(string) string { return "" }, io.Discard, nil)
		require.NoError(t, err, args)
		assert.NotEmpty(t, c.SecurityMode())
	}
}

func TestSecurityMode(t *testing.T) {
	t.Parallel()
	c := config.Defaults()
	assert.Equal(t, "mtls", c.SecurityMode())
	c.Insecure, c.Dev = true, true
	assert.Equal(t, "insecure-dev", c.SecurityMode())
	c.Dev = false
	assert.Equal(t, "insecure", c.SecurityMode())
}

// Issue 10, finding 7: secrets can come from files (*_FILE), and a secret given as a
// flag, which any user can read in the process list, is warned about.
func TestSecretsFromFilesAndFlagWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "db-url")
	require.NoError(t, os.WriteFile(urlFile, []byte("postgres://svc:s3cret@db:5432/tokenizer\n"), 0o600))
	tokenFile := filepath.Join(dir, "vault-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("hvs.filetoken\n"), 0o600))
	env := map[string]string{"TOKENIZER_DATABASE_URL_FILE": urlFile, "TOKENIZER_DATABASE_URL": "postgres://env@db/x"}
	getenv := func(k string) string { return env[k] }

	c, err := config.Load("serve", []string{"--dev", "--keys-vault-token-file", tokenFile}, getenv, io.Discard, nil)
	require.NoError(t, err)
	assert.Equal(t, "postgres://svc:s3cret@db:5432/tokenizer", c.Database.URL, "the _FILE variable wins over the plain one")
	assert.Equal(t, "hvs.filetoken", c.Keys.Vault.Token, "the file flag, newline trimmed")
	assert.Empty(t, c.Warnings, "no secret on the command line")

	c, err = config.Load("serve", []string{"--dev", "--database-url", "postgres://svc:pw@db/t", "--keys-vault-token", "hvs.x"}, getenv, io.Discard, nil)
	require.NoError(t, err)
	require.Len(t, c.Warnings, 2)
	assert.Contains(t, c.Warnings[0]+c.Warnings[1], "--database-url holds a secret")
	assert.Contains(t, c.Warnings[0]+c.Warnings[1], "--keys-vault-token holds a secret")
	for _, w := range c.Warnings {
		assert.NotContains(t, w, "pw@")
		assert.NotContains(t, w, "hvs.x")
	}

	c, err = config.Load("serve", []string{"--dev", "--database-url", "postgres://svc@db/t"}, getenv, io.Discard, nil)
	require.NoError(t, err)
	assert.Empty(t, c.Warnings, "a URL without a password is no secret")

	_, err = config.Load("serve", []string{"--dev", "--database-url-file", filepath.Join(dir, "absent")}, getenv, io.Discard, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--database-url-file")
}
