package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSubjectsAndGrantsSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenizer.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`dev: true
subjects:
  class: mrn
  key_cache_ttl: 30s
grants:
  max_duration: 48h
  security_labels:
    "http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY": [mrn, ssn]
`), 0o600))
	env := func(k string) string {
		if k == "TOKENIZER_SUBJECTS_VAULT_KV_MOUNT" {
			return "kv"
		}
		return ""
	}
	c, err := Load("test", []string{"--config", path}, env, io.Discard, nil)
	require.NoError(t, err)
	assert.Equal(t, "mrn", c.Subjects.Class)
	assert.Equal(t, 30*time.Second, c.Subjects.KeyCacheTTL)
	assert.Equal(t, "kv", c.Subjects.VaultKVMount, "settable from the environment")
	assert.Equal(t, "tokenizer/subjects", c.Subjects.VaultKVPrefix, "default")
	assert.Equal(t, 48*time.Hour, c.Grants.MaxDuration)
	assert.Equal(t, time.Hour, c.Grants.BreakGlassDuration, "default")
	assert.Equal(t, []string{"mrn", "ssn"}, c.Grants.SecurityLabels["http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY"])
	assert.Equal(t, c.Keys.LocalFile+".subjects", c.SubjectKeyDir())

	for body, want := range map[string]string{
		"subjects:\n  class: nope\nclasses:\n  - {name: ssn, format: ssn, mode: static}\n": `subjects.class: "nope" is not a configured class`,
		"grants:\n  break_glass_duration: 5h\n":                                            "grants.break_glass_duration: longer than grants.max_break_glass_duration",
		"grants:\n  security_labels:\n    PSY: [ssn]\n":                                    "grants.security_labels.PSY",
	} {
		require.NoError(t, os.WriteFile(path, []byte("dev: true\n"+body), 0o600))
		_, err := Load("test", []string{"--config", path}, func(string) string { return "" }, io.Discard, nil)
		require.Error(t, err, body)
		assert.Contains(t, err.Error(), want)
	}
}
