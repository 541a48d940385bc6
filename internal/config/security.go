package config

import (
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// validateSecurity refuses contradictory or unsafe combinations (docs/security.md):
// plaintext with TLS files or a policy file (they would be silently ignored), plaintext
// with real keys unless development mode says so, and TLS without a policy file (every
// request would be denied without a principal to authorize it).
func (c *Config) validateSecurity(bad func(key, format string, args ...any)) {
	tlsSet := c.TLS.CertFile != "" || c.TLS.KeyFile != "" || c.TLS.ClientCAFile != ""
	if c.Insecure && tlsSet {
		bad("insecure", "contradicts tls.cert_file/tls.key_file/tls.client_ca_file: choose plaintext (development) or mTLS, not both")
	}
	if c.Insecure && c.PolicyFile != "" {
		bad("insecure", "contradicts policy_file: in insecure mode every caller is dev and the policy file would be ignored")
	}
	if c.Insecure && c.Keys.Provider == "vault" && !c.Dev {
		bad("insecure", "refused with keys.provider=vault (real keys): plaintext, unauthenticated reveals need --dev to acknowledge a development setup")
	}
	if !c.Insecure && tlsSet && c.PolicyFile == "" {
		bad("policy_file", "required with tls.* (mTLS): without a policy no caller can be authorized")
	}
	if _, err := ParseProxies(c.TrustedProxies); err != nil {
		bad("trusted_proxies", "%v", err)
	}
	l := c.Limits
	if l.MaxStreamsPerConnection < 1 || l.MaxStreamsPerPrincipal < 1 || l.UnknownRequestsPerSecond < 1 {
		bad("limits", "max_streams_per_connection, max_streams_per_principal and unknown_requests_per_second must be at least 1")
	}
	if l.StreamIdleTimeout <= 0 || l.MaxConnectionAge <= 0 || l.ReadIdleTimeout <= 0 || l.ReadBodyTimeout <= 0 {
		bad("limits", "stream_idle_timeout, read_idle_timeout, read_body_timeout and max_connection_age must be positive")
	}
}

// SecurityMode names the effective security mode, for the start-up log and the
// tokenizer_security_mode metric: "mtls", "insecure-dev" or "insecure".
func (c *Config) SecurityMode() string {
	switch {
	case !c.Insecure:
		return "mtls"
	case c.Dev:
		return "insecure-dev"
	}
	return "insecure"
}

// ParseProxies parses comma-separated CIDRs (or single addresses).
func ParseProxies(raw string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(raw, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q: want a CIDR such as 10.0.0.0/8 or an address", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q: want a CIDR such as 10.0.0.0/8 or an address", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// secretFiles are the *_FILE variants of the secret settings: TOKENIZER_DATABASE_URL_FILE
// and --database-url-file read database.url from a file, so that the secret stays out of
// the process list and the environment. A secret that already has a _file setting
// (keys.vault.secret_id_file) keeps its own.
type secretFiles struct {
	flags map[string]*string // setting key → file named by its --…-file flag
}

func registerSecretFiles(fs *flag.FlagSet, settings []setting) *secretFiles {
	sf := &secretFiles{flags: map[string]*string{}}
	have := map[string]bool{}
	for _, s := range settings {
		have[s.key] = true
	}
	for _, s := range settings {
		if s.sensitive == "" || have[s.key+"_file"] {
			continue
		}
		v := new(string)
		sf.flags[s.key] = v
		fs.StringVar(v, s.flagName()+"-file", "", "file holding "+s.key+" (env "+s.envName()+"_FILE)")
	}
	return sf
}

// applyEnv reads the secrets named by TOKENIZER_…_FILE variables (after the plain
// environment, before flags).
func (sf *secretFiles) applyEnv(settings []setting, getenv func(string) string) error {
	for _, s := range settings {
		if _, ok := sf.flags[s.key]; !ok {
			continue
		}
		if path := getenv(s.envName() + "_FILE"); path != "" {
			if err := setFromFile(s, path); err != nil {
				return fmt.Errorf("%s_FILE: %w", s.envName(), err)
			}
		}
	}
	return nil
}

// applyFlags reads the secrets named by --…-file flags (they win over everything).
func (sf *secretFiles) applyFlags(settings []setting) error {
	for _, s := range settings {
		if p, ok := sf.flags[s.key]; ok && *p != "" {
			if err := setFromFile(s, *p); err != nil {
				return fmt.Errorf("--%s-file: %w", s.flagName(), err)
			}
		}
	}
	return nil
}

func setFromFile(s setting, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return s.set(strings.TrimRight(string(b), "\r\n"))
}

// secretFlagWarning is the warning for a secret given on the command line, which other
// users of the machine can read in the process list; "" when the flag holds no secret.
func secretFlagWarning(s setting, raw string) string {
	if s.sensitive == "" || raw == "" {
		return ""
	}
	if s.sensitive == "url" {
		u, err := url.Parse(raw)
		if err == nil {
			_, hasPass := u.User.Password()
			if !hasPass && !u.Query().Has("password") {
				return ""
			}
		}
	}
	return fmt.Sprintf("--%s holds a secret that other users can read in the process list; use %s_FILE or a --…-file flag", s.flagName(), s.envName())
}
