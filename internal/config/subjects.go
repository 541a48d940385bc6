package config

import (
	"fmt"
	"strings"
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

// GrantsConfig bounds grants (docs/subjects.md).
type GrantsConfig struct {
	MaxDuration           time.Duration `yaml:"max_duration" usage:"longest grant (not_after - not_before)"`
	BreakGlassDuration    time.Duration `yaml:"break_glass_duration" usage:"length of a break-glass grant when not_after is not given"`
	MaxBreakGlassDuration time.Duration `yaml:"max_break_glass_duration" usage:"longest break-glass grant"`
	MaxApprovals          int           `yaml:"max_approvals" usage:"most approvers a grant may require"`
	// SecurityLabels maps a FHIR Consent securityLabel, "system|code", to the classes
	// it stands for (ImportConsent); the system urn:tokenizer:class needs no entry.
	SecurityLabels map[string][]string `yaml:"security_labels" flag:"-"`
}

func (g *GrantsConfig) defaults() {
	if g.MaxDuration == 0 {
		g.MaxDuration = 90 * 24 * time.Hour
	}
	if g.BreakGlassDuration == 0 {
		g.BreakGlassDuration = time.Hour
	}
	if g.MaxBreakGlassDuration == 0 {
		g.MaxBreakGlassDuration = 4 * time.Hour
	}
	if g.MaxApprovals == 0 {
		g.MaxApprovals = 5
	}
}

func (g *GrantsConfig) validate() []string {
	var problems []string
	if g.MaxDuration < 0 || g.BreakGlassDuration < 0 || g.MaxBreakGlassDuration < 0 {
		problems = append(problems, "grants: durations must not be negative")
	}
	if g.BreakGlassDuration > g.MaxBreakGlassDuration {
		problems = append(problems, "grants.break_glass_duration: longer than grants.max_break_glass_duration")
	}
	if g.MaxApprovals < 0 {
		problems = append(problems, "grants.max_approvals: must not be negative")
	}
	for label, classes := range g.SecurityLabels {
		if !strings.Contains(label, "|") || len(classes) == 0 {
			problems = append(problems, fmt.Sprintf("grants.security_labels.%s: want \"system|code\": [classes]", label))
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
