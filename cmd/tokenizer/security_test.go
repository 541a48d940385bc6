package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeRefusesInsecureWithTLS is finding 3 of issue 10 as the reviewer met it: the
// repository's tokenizer.yaml (insecure: true) in the working directory and explicit
// --tls-* and --policy-file flags. serve used to ignore the flags and serve plaintext,
// unauthenticated, allow-all reveals; now it exits 2 naming the contradiction.
func TestServeRefusesInsecureWithTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.yaml"), []byte("dev: true\ninsecure: true\n"), 0o600))
	cmd := exec.Command(binary, "serve", "--tls-cert-file", "s.crt", "--tls-key-file", "s.key",
		"--tls-client-ca-file", "ca.pem", "--policy-file", "policy.yaml",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "serve must not start: %s", out)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Contains(t, string(out), "insecure: contradicts tls.cert_file")
	assert.Contains(t, string(out), "insecure: contradicts policy_file")
}
