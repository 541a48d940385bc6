package config

import (
	"fmt"
	"time"
)

// SubjectsConfig configures data subjects (patients): per-subject keys held only in
// the key provider, erasure, and each subject's own token (docs/subjects.md).
type SubjectsConfig struct {
	// Class is the class of each subject's own token (its pseudonymous identifier);
	// empty: subjects get no token of their own.
	Class string `yaml:"class" usage:"class of each subject's own token (empty: none)"`
	// LocalDir holds the subject keys of the local (development) key provider.
	LocalDir string `yaml:"local_dir" usage:"directory of subject keys with the local key provider (default: keys.local_file + .subjects)"`
	// VaultKVMount and VaultKVPrefix say where subject keys live in Vault (KV v2).
	VaultKVMount  string `yaml:"vault_kv_mount" usage:"Vault KV version 2 mount that holds subject keys"`
	VaultKVPrefix string `yaml:"vault_kv_prefix" usage:"path prefix of subject keys in the KV mount"`
	// KeyCacheTTL bounds how long a replica keeps a subject key unwrapped in memory.
	KeyCacheTTL time.Duration `yaml:"key_cache_ttl" usage:"how long a replica keeps an unwrapped subject key in memory"`
}

func (s *SubjectsConfig) defaults() {
	if s.VaultKVMount == "" {
		s.VaultKVMount = "secret"
	}
	if s.VaultKVPrefix == "" {
		s.VaultKVPrefix = "tokenizer/subjects"
	}
	if s.KeyCacheTTL == 0 {
		s.KeyCacheTTL = time.Minute
	}
}

// validate reports the subjects settings' problems, each naming its key.
func (s *SubjectsConfig) validate(classes []Class) []string {
	var problems []string
	if s.KeyCacheTTL < 0 {
		problems = append(problems, "subjects.key_cache_ttl: must not be negative")
	}
	if s.Class != "" {
		found := len(classes) == 0 // the development classes are checked when compiled
		for _, c := range classes {
			found = found || c.Name == s.Class
		}
		if !found {
			problems = append(problems, fmt.Sprintf("subjects.class: %q is not a configured class", s.Class))
		}
	}
	return problems
}

// SubjectKeyDir is the directory of subject keys for the local provider.
func (c *Config) SubjectKeyDir() string {
	if c.Subjects.LocalDir != "" {
		return c.Subjects.LocalDir
	}
	return c.Keys.LocalFile + ".subjects"
}
