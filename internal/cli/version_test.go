package cli

import (
	"bytes"
	"context"
	goruntime "runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestVersion prints the version, commit, Go version and platform; link-time values win.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	code := Run(context.Background(), []string{"version"}, func(string) string { return "" }, &out, &out)
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out.String(), "tokenizer "+Version()+"\n")
	assert.Contains(t, out.String(), "go: "+goruntime.Version()+"\n")
	assert.Contains(t, out.String(), "platform: "+goruntime.GOOS+"/"+goruntime.GOARCH+"\n")

	oldV, oldC := buildVersion, buildCommit
	t.Cleanup(func() { buildVersion, buildCommit = oldV, oldC })
	buildVersion, buildCommit = "v1.2.3", "abc123"
	out.Reset()
	Run(context.Background(), []string{"version"}, func(string) string { return "" }, &out, &out)
	assert.Equal(t, "tokenizer v1.2.3\ncommit: abc123\ngo: "+goruntime.Version()+"\nplatform: "+goruntime.GOOS+"/"+goruntime.GOARCH+"\n", out.String())
}
