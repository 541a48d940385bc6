package client_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMEGoSnippetCompiles builds the Go code of the README's "Integrating (Go
// client)" section, wrapped in a function, so that the README cannot drift from the
// library's API. The file is added through a build overlay; nothing is written to the
// source tree.
func TestREADMEGoSnippetCompiles(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(raw), "## Integrating (Go client)")
	require.True(t, ok, "README has the section")
	m := regexp.MustCompile("(?s)```go\n(.*?)```").FindStringSubmatch(after)
	require.NotNil(t, m, "the section has a go block")
	src := `package readmesnippet

import (
	"context"
	"log"

	"github.com/phivault/tokenizer/pkg/client"
)

func run(ctx context.Context) error {
` + m[1] + `
	_ = values
	return err
}
`
	dir := t.TempDir()
	file := filepath.Join(dir, "snippet.go")
	require.NoError(t, os.WriteFile(file, []byte(src), 0o600))
	virtual, err := filepath.Abs("readmesnippet/snippet.go")
	require.NoError(t, err)
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{virtual: file}})
	require.NoError(t, err)
	ov := filepath.Join(dir, "overlay.json")
	require.NoError(t, os.WriteFile(ov, overlay, 0o600))
	out, err := exec.Command("go", "build", "-overlay", ov, "-o", os.DevNull, "./readmesnippet").CombinedOutput()
	require.NoError(t, err, "README Go snippet does not compile:\n%s\n%s", out, src)
}
