package config_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/config"
)

// valid is a configuration that passes Validate, as Load leaves it.
func valid() *config.Config {
	c := config.Defaults()
	c.Log.Format = "json"
	c.Keys.Provider = "vault"
	c.Classes = config.DefaultClasses()
	return c
}

func TestValidateMessages(t *testing.T) {
	t.Parallel()
	require.NoError(t, valid().Validate())
	tests := []struct {
		name   string
		mutate func(*config.Config)
		want   string
	}{
		{"grpc_addr", func(c *config.Config) { c.GRPCAddr = "9090" }, "grpc_addr: want host:port"},
		{"http_addr", func(c *config.Config) { c.HTTPAddr = "" }, "http_addr: want host:port"},
		{"admin_addr", func(c *config.Config) { c.AdminAddr = "localhost" }, "admin_addr: want host:port"},
		{"log.level", func(c *config.Config) { c.Log.Level = "verbose" }, "log.level: want debug, info, warn or error"},
		{"log.format", func(c *config.Config) { c.Log.Format = "xml" }, "log.format: want json or text"},
		{"database.url scheme", func(c *config.Config) { c.Database.URL = "mysql://db/tokenizer" }, "database.url: want a postgres:// URL"},
		{"database.url unparsable", func(c *config.Config) { c.Database.URL = "postgres://[::1" }, "database.url: want a postgres:// URL"},
		{"database.max_conns", func(c *config.Config) { c.Database.MaxConns = 0 }, "database.max_conns: must be at least 1"},
		{"database.connect_timeout", func(c *config.Config) { c.Database.ConnectTimeout = 0 }, "database.connect_timeout: must be positive"},
		{"keys.provider", func(c *config.Config) { c.Keys.Provider = "kms" }, "keys.provider: want local or vault"},
		{"keys.check_interval", func(c *config.Config) { c.Keys.CheckInterval = -time.Second }, "keys.check_interval: must be positive"},
		{"keys.reload_interval", func(c *config.Config) { c.Keys.ReloadInterval = 0 }, "keys.reload_interval: must be positive"},
		{"limits.max_items", func(c *config.Config) { c.Limits.MaxItems = 0 }, "limits.max_items: must be at least 1"},
		{"limits.max_value_bytes", func(c *config.Config) { c.Limits.MaxValueBytes = -1 }, "limits.max_value_bytes: must be at least 1"},
		{"limits.max_message_bytes", func(c *config.Config) { c.Limits.MaxMessageBytes = 1023 }, "limits.max_message_bytes: must be at least 1024"},
		{"audit.checkpoint_every", func(c *config.Config) { c.Audit.CheckpointEvery = 0 }, "audit.checkpoint_every: must be at least 1"},
		{"audit.checkpoint_interval", func(c *config.Config) { c.Audit.CheckpointInterval = 0 }, "audit.checkpoint_interval: must be positive"},
		{"audit.checkpoint_sink", func(c *config.Config) { c.Audit.CheckpointSink = "" }, "audit.checkpoint_sink: want stdout, none or a file path"},
		{"audit.write_timeout", func(c *config.Config) { c.Audit.WriteTimeout = -1 }, "audit.write_timeout: must be positive"},
		{"coalesce.window negative", func(c *config.Config) { c.Coalesce.Window = -time.Millisecond }, "coalesce.window: must be 0 (off) to 100ms"},
		{"coalesce.window too long", func(c *config.Config) { c.Coalesce.Window = time.Second }, "coalesce.window: must be 0 (off) to 100ms"},
		{"coalesce.max_items", func(c *config.Config) { c.Coalesce.MaxItems = 1 }, "coalesce.max_items: must be at least 2 when coalescing is on"},
		{"request_timeout", func(c *config.Config) { c.RequestTimeout = 0 }, "request_timeout: must be positive"},
		{"shutdown_timeout", func(c *config.Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout: must be positive"},
		{"duplicate class", func(c *config.Config) { c.Classes = append(c.Classes, config.Class{Name: "ssn"}) },
			fmt.Sprintf("classes[%d]: class ssn is defined twice", len(config.DefaultClasses()))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tc.mutate(c)
			err := c.Validate()
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "invalid configuration:\n  "+tc.want), err.Error())
			assert.Equal(t, 1, strings.Count(err.Error(), "\n  "), "exactly one problem: %s", err)
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		t.Parallel()
		c := valid()
		c.Log.Level, c.Limits.MaxItems = "loud", 0
		err := c.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "log.level")
		assert.Contains(t, err.Error(), "limits.max_items")
	})
}

func TestValidateKeysMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*config.Config)
		want   string // "" when valid
	}{
		{"local in dev", func(c *config.Config) { c.Dev, c.Keys.Provider = true, "local" }, ""},
		{"local outside dev", func(c *config.Config) { c.Keys.Provider = "local" },
			"keys.provider: the local key provider is for development only"},
		{"local without file", func(c *config.Config) { c.Dev, c.Keys.Provider, c.Keys.LocalFile = true, "local", "" },
			"keys.local_file: required with the local provider"},
		{"vault token", func(c *config.Config) { c.Keys.Vault.Address, c.Keys.Vault.Token = "https://v:8200", "t" }, ""},
		{"vault address", func(c *config.Config) { c.Keys.Vault.Token = "t" }, "keys.vault.address: required with keys.provider=vault"},
		{"vault token missing", func(c *config.Config) { c.Keys.Vault.Address = "https://v:8200" },
			"keys.vault.token: required with auth_method token"},
		{"approle missing secret", func(c *config.Config) {
			c.Keys.Vault = config.VaultConfig{Address: "https://v:8200", AuthMethod: "approle", RoleID: "r"}
		}, "keys.vault.role_id and secret_id (or secret_id_file): required with auth_method approle"},
		{"approle missing role", func(c *config.Config) {
			c.Keys.Vault = config.VaultConfig{Address: "https://v:8200", AuthMethod: "approle", SecretID: "s"}
		}, "keys.vault.role_id and secret_id"},
		{"approle with secret file", func(c *config.Config) {
			c.Keys.Vault = config.VaultConfig{Address: "https://v:8200", AuthMethod: "approle", RoleID: "r", SecretIDFile: "/f"}
		}, ""},
		{"kubernetes role", func(c *config.Config) {
			c.Keys.Vault = config.VaultConfig{Address: "https://v:8200", AuthMethod: "kubernetes"}
		}, "keys.vault.kubernetes_role: required with auth_method kubernetes"},
		{"auth method", func(c *config.Config) {
			c.Keys.Vault = config.VaultConfig{Address: "https://v:8200", AuthMethod: "ldap"}
		}, "keys.vault.auth_method: want token, approle or kubernetes"},
		{"negative timeout", func(c *config.Config) {
			c.Keys.Vault = config.VaultConfig{Address: "https://v:8200", Token: "t", Timeout: -time.Second}
		}, "keys.vault.timeout and max_retries must not be negative"},
		{"negative retries", func(c *config.Config) {
			c.Keys.Vault = config.VaultConfig{Address: "https://v:8200", Token: "t", MaxRetries: -1}
		}, "keys.vault.timeout and max_retries must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tc.mutate(c)
			err := c.ValidateKeys()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "invalid configuration:\n  "), err.Error())
		})
	}
}

func TestPrecedencePerType(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`
dev: true
grpc_addr: 127.0.0.1:1001
limits:
  max_items: 11
request_timeout: 11s
`), 0o600))
	fileEnv := map[string]string{"TOKENIZER_CONFIG": file}
	allEnv := map[string]string{
		"TOKENIZER_CONFIG":           file,
		"TOKENIZER_DEV":              "false",
		"TOKENIZER_GRPC_ADDR":        "127.0.0.1:2002",
		"TOKENIZER_LIMITS_MAX_ITEMS": "22",
		"TOKENIZER_REQUEST_TIMEOUT":  "22s",
	}
	flags := []string{"--dev", "--grpc-addr", "127.0.0.1:3003", "--limits-max-items=33", "--request-timeout", "33s"}
	type want struct {
		dev     bool
		grpc    string
		items   int
		timeout time.Duration
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want want
	}{
		{"default", nil, nil, want{false, "127.0.0.1:9090", 1000, 10 * time.Second}},
		{"file over default", nil, fileEnv, want{true, "127.0.0.1:1001", 11, 11 * time.Second}},
		{"env over file", nil, allEnv, want{false, "127.0.0.1:2002", 22, 22 * time.Second}},
		{"flag over env", flags, allEnv, want{true, "127.0.0.1:3003", 33, 33 * time.Second}},
		{"flag over default", flags, nil, want{true, "127.0.0.1:3003", 33, 33 * time.Second}},
		{"bool flag with value", []string{"--dev=false"}, fileEnv, want{false, "127.0.0.1:1001", 11, 11 * time.Second}},
		{"--config flag names the file", []string{"--config", file}, nil, want{true, "127.0.0.1:1001", 11, 11 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load("serve", tc.args, func(k string) string { return tc.env[k] }, io.Discard, nil)
			require.NoError(t, err)
			assert.Equal(t, tc.want.dev, c.Dev, "bool")
			assert.Equal(t, tc.want.grpc, c.GRPCAddr, "string")
			assert.Equal(t, tc.want.items, c.Limits.MaxItems, "int")
			assert.Equal(t, tc.want.timeout, c.RequestTimeout, "duration")
			wantProvider, wantFormat := "vault", "json"
			if tc.want.dev {
				wantProvider, wantFormat = "local", "text"
			}
			assert.Equal(t, wantProvider, c.Keys.Provider, "the provider default follows dev")
			assert.Equal(t, wantFormat, c.Log.Format, "the log format default follows dev")
		})
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	require.NoError(t, os.WriteFile(unknown, []byte("databse:\n  url: postgres://x/y\n"), 0o600))
	dup := filepath.Join(dir, "dup.yaml")
	require.NoError(t, os.WriteFile(dup, []byte("classes:\n  - name: a\n    format: ssn\n  - name: a\n    format: ssn\n"), 0o600))
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown YAML field", []string{"--config", unknown}, nil, "field databse not found"},
		{"missing file", []string{"--config", filepath.Join(dir, "absent.yaml")}, nil, "config file"},
		{"positional argument", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"positional after bool flag", []string{"--dev", "now"}, nil, `unexpected argument "now"`},
		{"unknown flag", []string{"--no-such-flag"}, nil, "no-such-flag"},
		{"bad bool flag", []string{"--insecure=maybe"}, nil, "--insecure: want true or false"},
		{"bad int flag", []string{"--database-max-conns", "many"}, nil, "--database-max-conns: want a whole number"},
		{"bad duration flag", []string{"--shutdown-timeout", "30"}, nil, "--shutdown-timeout: want a duration"},
		{"bad bool env", nil, map[string]string{"TOKENIZER_DEV": "yes please"}, "TOKENIZER_DEV: want true or false"},
		{"bad int env", nil, map[string]string{"TOKENIZER_LIMITS_MAX_ITEMS": "1e3"}, "TOKENIZER_LIMITS_MAX_ITEMS: want a whole number"},
		{"bad duration env", nil, map[string]string{"TOKENIZER_KEYS_VAULT_TIMEOUT": "5"}, "TOKENIZER_KEYS_VAULT_TIMEOUT: want a duration"},
		{"validation runs", []string{"--log-level", "chatty"}, nil, "log.level: want debug, info, warn or error"},
		{"duplicate classes in file", []string{"--config", dup}, nil, "classes[1]: class a is defined twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load("serve", tc.args, func(k string) string { return tc.env[k] }, io.Discard, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// sensitiveField is a field tagged sensitive, found by walking Config.
type sensitiveField struct {
	key, tag string
	field    reflect.Value
}

func walkSensitive(prefix string, v reflect.Value, out *[]sensitiveField) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			walkSensitive(key+".", v.Field(i), out)
			continue
		}
		if tag := f.Tag.Get("sensitive"); tag != "" {
			*out = append(*out, sensitiveField{key: key, tag: tag, field: v.Field(i)})
		}
	}
}

func TestEverySensitiveSettingIsRedacted(t *testing.T) {
	t.Parallel()
	c := valid()
	c.GRPCAddr = "127.0.0.1:4242" // a plain setting that must still show
	var fields []sensitiveField
	walkSensitive("", reflect.ValueOf(c).Elem(), &fields)
	keys := make([]string, 0, len(fields))
	secrets := map[string]string{}
	for i, f := range fields {
		keys = append(keys, f.key)
		require.Equal(t, reflect.String, f.field.Kind(), "%s: only strings can be tagged sensitive", f.key)
		secret := fmt.Sprintf("s3cr3t-%d-%s", i, strings.ReplaceAll(f.key, ".", "-"))
		secrets[f.key] = secret
		switch f.tag {
		case "url":
			f.field.SetString("postgres://svc:" + secret + "@db.internal:5432/tokenizer?sslmode=disable")
		default:
			assert.Equal(t, "true", f.tag, "%s: unknown sensitive tag", f.key)
			f.field.SetString(secret)
		}
	}
	assert.Subset(t, keys, []string{"database.url", "keys.vault.token", "keys.vault.secret_id"})

	out := c.String()
	assert.Contains(t, out, "127.0.0.1:4242", "String renders the configuration")
	assert.Contains(t, out, "db.internal:5432", "a URL keeps all but its password")
	for key, secret := range secrets {
		t.Run(key, func(t *testing.T) {
			assert.NotContains(t, out, secret)
			assert.Contains(t, c.String(), "REDACTED")
		})
	}
	for _, f := range fields {
		assert.Contains(t, f.field.String(), secrets[f.key], "%s: the live configuration keeps the secret", f.key)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"password", "postgres://u:pw@h:5432/db", "postgres://u:REDACTED@h:5432/db"},
		{"no password", "postgres://u@h/db", "postgres://u@h/db"},
		{"query password", "postgres://h/db?password=pw&sslmode=disable", "postgres://h/db?password=REDACTED&sslmode=disable"},
		{"unparsable", "postgres://u:pw@[::1", "REDACTED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, config.RedactURL(tc.in))
		})
	}
}

func TestDefaultClassNames(t *testing.T) {
	t.Parallel()
	var names []string
	for _, c := range config.DefaultClasses() {
		names = append(names, c.Name)
		assert.NotEmpty(t, c.Format, c.Name)
		assert.NotEmpty(t, c.Mode, c.Name)
	}
	assert.Equal(t, []string{"ssn", "phone", "email", "name", "date", "npi", "credit_card", "mrn",
		"fhir_id", "fhir_name", "fhir_telecom", "fhir_identifier", "fhir_address", "fhir_text", "ssn_fpe", "ssn_vaultless", "ssn_dynamic"}, names)
}
