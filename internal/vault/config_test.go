package vault_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/vault"
)

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	var c vault.Config
	c.Defaults()
	assert.Equal(t, vault.Config{AuthMethod: "token", TransitMount: "transit", KEKName: "tokenizer-kek",
		SigningKey: "tokenizer-audit", KubernetesTokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token",
		Timeout: 5 * time.Second, MaxRetries: 2}, c)

	set := vault.Config{AuthMethod: "approle", TransitMount: "t2", KEKName: "k", SigningKey: "s",
		KubernetesTokenFile: "/tok", Timeout: time.Second, MaxRetries: 5}
	kept := set
	kept.Defaults()
	assert.Equal(t, set, kept, "set fields are kept")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  vault.Config
		err  string // "" when valid
	}{
		{"token", vault.Config{Address: "http://v", Token: "t"}, ""},
		{"approle with secret id", vault.Config{Address: "http://v", AuthMethod: "approle", RoleID: "r", SecretID: "s"}, ""},
		{"approle with secret id file", vault.Config{Address: "http://v", AuthMethod: "approle", RoleID: "r", SecretIDFile: "/f"}, ""},
		{"kubernetes", vault.Config{Address: "http://v", AuthMethod: "kubernetes", KubernetesRole: "r"}, ""},
		{"no address", vault.Config{Token: "t"}, "keys.vault.address: required with keys.provider=vault"},
		{"token without token", vault.Config{Address: "http://v"}, "keys.vault.token: required with auth_method token"},
		{"approle without role", vault.Config{Address: "http://v", AuthMethod: "approle", SecretID: "s"},
			"keys.vault.role_id and secret_id (or secret_id_file): required with auth_method approle"},
		{"approle without secret", vault.Config{Address: "http://v", AuthMethod: "approle", RoleID: "r"},
			"keys.vault.role_id and secret_id (or secret_id_file): required with auth_method approle"},
		{"kubernetes without role", vault.Config{Address: "http://v", AuthMethod: "kubernetes"},
			"keys.vault.kubernetes_role: required with auth_method kubernetes"},
		{"unknown method", vault.Config{Address: "http://v", AuthMethod: "ldap"}, "keys.vault.auth_method: want token, approle or kubernetes"},
		{"negative timeout", vault.Config{Address: "http://v", Token: "t", Timeout: -time.Second},
			"keys.vault.timeout and max_retries must not be negative"},
		{"negative retries", vault.Config{Address: "http://v", Token: "t", MaxRetries: -1},
			"keys.vault.timeout and max_retries must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			if cfg.AuthMethod == "" {
				cfg.AuthMethod = "token"
			}
			err := cfg.Validate()
			if tt.err == "" {
				require.NoError(t, err)
				c, err := vault.New(tt.cfg, quiet)
				require.NoError(t, err, "New accepts what Validate accepts")
				c.Close()
				return
			}
			require.Error(t, err)
			assert.Equal(t, tt.err, err.Error())
			_, err = vault.New(tt.cfg, quiet)
			assert.Error(t, err, "New validates")
		})
	}
}

func TestNewRejectsAMissingCACert(t *testing.T) {
	t.Parallel()
	_, err := vault.New(vault.Config{Address: "https://v", Token: "t", CACert: filepath.Join(t.TempDir(), "none.pem")}, quiet)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "keys.vault.ca_cert")
}
