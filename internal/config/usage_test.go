package config

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHelpShowsTypesAndDefaults: `tokenizer serve -h` names the type of every setting
// (duration, int, string; booleans stand alone) and its default.
func TestHelpShowsTypesAndDefaults(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	_, err := Load("serve", []string{"-h"}, func(string) string { return "" }, &out, nil)
	require.True(t, errors.Is(err, flag.ErrHelp), "err = %v", err)
	help := out.String()
	for _, want := range []string{
		"  -request-timeout duration\n",
		"(env TOKENIZER_REQUEST_TIMEOUT) (default 10s)",
		"  -limits-max-items int\n",
		"(env TOKENIZER_LIMITS_MAX_ITEMS) (default 1000)",
		"  -grpc-addr string\n",
		`(env TOKENIZER_GRPC_ADDR) (default "127.0.0.1:9090")`,
		`(default "postgres://postgres@127.0.0.1:5432/tokenizer?sslmode=disable")`,
		"  -dev\n",
		"  -config string\n",
	} {
		assert.Contains(t, help, want)
	}
	assert.NotContains(t, help, " value\n", "no flag is typed value")

	// Every setting has its line, and every line but a boolean's has a type word.
	line := regexp.MustCompile(`(?m)^  -(\S+)(?: (\S+))?$`)
	typed := map[string]string{}
	for _, m := range line.FindAllStringSubmatch(help, -1) {
		typed[m[1]] = m[2]
	}
	for _, s := range Defaults().settings() {
		kind, ok := typed[s.flagName()]
		require.True(t, ok, "flag %s listed", s.flagName())
		if s.field.Kind().String() == "bool" {
			assert.Empty(t, kind, s.flagName())
			continue
		}
		assert.Contains(t, []string{"string", "int", "duration"}, kind, s.flagName())
	}
}

// TestHelpRedactsDefaults: a default with a password never appears in -h.
func TestHelpRedactsDefaults(t *testing.T) {
	t.Parallel()
	c := Defaults()
	c.Database.URL = "postgres://app:hunter2@db/tokenizer"
	var out bytes.Buffer
	fs, _, _ := newFlagSet("serve", c.settings(), &out, nil)
	fs.Usage()
	assert.NotContains(t, out.String(), "hunter2")
	assert.Contains(t, out.String(), "REDACTED")
	assert.True(t, strings.HasPrefix(out.String(), "Usage of tokenizer serve:\n"))
}
