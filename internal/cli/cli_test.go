package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

func noEnv(string) string { return "" }

// run drives Run as main does and returns the exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, noEnv, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring; "" means stdout must be empty
		wantStderr string // substring; "" means stderr must be empty
	}{
		{"no args", nil, exitUsage, "", "Usage:\n  tokenizer serve"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `tokenizer: unknown command "frobnicate"`},
		{"help", []string{"help"}, exitOK, "Usage:\n  tokenizer serve", ""},
		{"-h", []string{"-h"}, exitOK, "Usage:", ""},
		{"--help", []string{"--help"}, exitOK, "Usage:", ""},
		{"version", []string{"version"}, exitOK, "tokenizer ", ""},
		{"keys without subcommand", []string{"keys"}, exitUsage, "", "Usage:"},
		{"keys unknown subcommand", []string{"keys", "explode"}, exitUsage, "", `tokenizer keys: unknown command "explode"`},
		{"audit without subcommand", []string{"audit"}, exitUsage, "", "Usage:"},
		{"audit unknown subcommand", []string{"audit", "shred"}, exitUsage, "", `tokenizer audit: unknown command "shred"`},
		{"bench bad batches", []string{"bench", "--batches", "1,zero"}, exitUsage, "", `--batches: "zero" is not a positive number`},
		{"serve unknown flag", []string{"serve", "--no-such-flag"}, exitUsage, "", "no-such-flag"},
		{"serve stray argument", []string{"serve", "--dev", "extra"}, exitUsage, "", `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run(t, tc.args...)
			assert.Equal(t, tc.wantCode, code, stderr)
			if tc.wantStdout == "" {
				assert.Empty(t, stdout)
			} else {
				assert.Contains(t, stdout, tc.wantStdout)
			}
			if tc.wantStderr == "" {
				assert.Empty(t, stderr)
			} else {
				assert.Contains(t, stderr, tc.wantStderr)
			}
		})
	}
}

func TestVersionLine(t *testing.T) {
	t.Parallel()
	code, stdout, _ := run(t, "version")
	require.Equal(t, exitOK, code)
	first, rest, _ := strings.Cut(stdout, "\n")
	assert.Equal(t, "tokenizer "+Version(), first)
	assert.Contains(t, rest, "go: go1.")
	assert.NotEmpty(t, Version())
}

func TestParseBatches(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		in      string
		want    []int
		wantErr string
	}{
		{"one", "10", []int{10}, ""},
		{"several", "1,10,100", []int{1, 10, 100}, ""},
		{"spaces", " 1 , 50 ", []int{1, 50}, ""},
		{"duplicates kept in order", "5,1,5", []int{5, 1, 5}, ""},
		{"zero", "0", nil, `--batches: "0" is not a positive number`},
		{"negative", "10,-1", nil, `--batches: "-1" is not a positive number`},
		{"word", "ten", nil, `--batches: "ten" is not a positive number`},
		{"empty", "", nil, `--batches: "" is not a positive number`},
		{"trailing comma", "10,", nil, `--batches: "" is not a positive number`},
		{"decimal", "1.5", nil, `--batches: "1.5" is not a positive number`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseBatches(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantErr, err.Error())
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// devFlags are the flags of a command run in dev mode against db, with its local
// key file in a temporary directory.
func devFlags(t *testing.T, db string) []string {
	return []string{"--dev", "--keys-local-file", filepath.Join(t.TempDir(), "kek.hex"), "--database-url", db}
}

func TestKeysRotateRefusesStaticPurposes(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	for _, purpose := range []string{"token-digest", "fingerprint", "ff1"} {
		t.Run(purpose, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"keys", "rotate", "--purpose", purpose}, devFlags(t, db)...)
			code, stdout, stderr := run(t, args...)
			assert.Equal(t, exitUsage, code, stderr)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, "tokenizer keys rotate: --purpose "+purpose+" cannot rotate (it would change static tokens)")
		})
	}
}

// TestMigrateAndKeys drives migrate, keys status and keys rotate against a fresh
// database, as an operator would.
func TestMigrateAndKeys(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	flags := devFlags(t, db)
	steps := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string // "" for success
	}{
		{"keys before migrate fails", []string{"keys", "status"}, exitFailure, "", "tokenizer keys status: "},
		{"migrate applies", []string{"migrate"}, exitOK, "applied migrations", ""},
		{"migrate again is a no-op", []string{"migrate"}, exitOK, "schema is up to date", ""},
		{"keys status", []string{"keys", "status"}, exitOK, "value-encryption", ""},
		{"keys rotate value-encryption", []string{"keys", "rotate"}, exitOK, "value-encryption is now at version 2", ""},
		{"keys rotate audit-digest", []string{"keys", "rotate", "--purpose", "audit-digest"}, exitOK, "audit-digest is now at version 2", ""},
		{"keys status shows the new version", []string{"keys", "status"}, exitOK, "v2", ""},
		{"keys reencrypt with nothing to move", []string{"keys", "reencrypt", "--batch", "10"}, exitOK, "re-encrypted 0 rows to value-encryption v2", ""},
		{"keys rewrap", []string{"keys", "rewrap"}, exitOK, "rewrapped ", ""},
		{"audit verify", []string{"audit", "verify"}, exitOK, "", ""},
		{"audit export csv", []string{"audit", "export", "--format", "csv"}, exitOK, "", ""},
		{"audit export unknown format", []string{"audit", "export", "--format", "xml"}, exitUsage, "",
			`tokenizer audit export: --format "xml": want jsonl, csv or fhir`},
		{"audit disclosures needs class and token", []string{"audit", "disclosures"}, exitUsage, "",
			"tokenizer audit disclosures: --class and --token, or --subject, are required"},
		{"audit disclosures of an unknown class", []string{"audit", "disclosures", "--class", "nope", "--token", "tok-planted-77"}, exitFailure, "",
			"tokenizer audit disclosures: "},
		{"audit disclosures of a malformed token", []string{"audit", "disclosures", "--class", "ssn", "--token", "123-45-6789"}, exitFailure, "",
			"tokenizer audit disclosures: class ssn: token does not fit format ssn: not a token of this class"},
		{"audit disclosures of a token never revealed", []string{"audit", "disclosures", "--class", "ssn", "--token", "912-34-5678"}, exitOK, "", ""},
		{"the CLI's own commands are in the audit log", []string{"audit", "export", "--format", "jsonl"}, exitOK, "list_disclosures", ""},
		{"the chain still verifies", []string{"audit", "verify"}, exitOK, "", ""},
	}
	for _, s := range steps { // sequential: each step builds on the last
		code, stdout, stderr := run(t, append(s.args, flags...)...)
		if !assert.Equal(t, s.wantCode, code, "%s: %s", s.name, stderr) {
			continue
		}
		assert.Contains(t, stdout, s.wantStdout, s.name)
		if s.wantStderr != "" {
			assert.Contains(t, stderr, s.wantStderr, s.name)
		}
		for _, planted := range []string{"tok-planted-77", "123-45-6789", "912-34-5678"} {
			assert.NotContains(t, stderr, planted, "%s: errors never echo the token", s.name)
		}
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		format    string
		level     string
		wantJSON  bool
		wantDebug bool
	}{
		{"json", "json", "info", true, false},
		{"text", "text", "info", false, false},
		{"empty format is json", "", "info", true, false},
		{"debug level", "text", "debug", false, true},
		{"bad level falls back to info", "json", "loud", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			cfg := &config.Config{Log: config.LogConfig{Format: tc.format, Level: tc.level}}
			log := NewLogger(cfg, &buf)
			log.Debug("quiet")
			log.Info("hello", "k", "v")
			out := buf.String()
			assert.Equal(t, tc.wantDebug, strings.Contains(out, "quiet"))
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			var m map[string]any
			isJSON := json.Unmarshal([]byte(last), &m) == nil
			assert.Equal(t, tc.wantJSON, isJSON, last)
			if isJSON {
				assert.Equal(t, "hello", m["msg"])
				assert.Equal(t, "v", m["k"])
			} else {
				assert.Contains(t, last, "msg=hello k=v")
			}
		})
	}
}
