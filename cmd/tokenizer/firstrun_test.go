package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// defaultPorts are the ports `make run` serves on (gRPC, REST, admin).
var defaultPorts = []string{"127.0.0.1:9090", "127.0.0.1:8080", "127.0.0.1:9102"}

// occupyDefaultPorts listens on the default ports that are free, for the whole test
// run, as a `make run` in another terminal would: a test that reached for them
// would meet a server that closes every connection. Ports already taken stay with
// whoever holds them. It returns the release function.
func occupyDefaultPorts() func() {
	var held []net.Listener
	for _, addr := range defaultPorts {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken already: just as good
		}
		held = append(held, l)
		go closeEvery(l)
	}
	return func() {
		for _, l := range held {
			l.Close()
		}
	}
}

// closeEvery accepts and closes every connection until l is closed.
func closeEvery(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// TestDefaultPortsAreTaken: while this package's tests run, something listens on
// every default port, so the tests that pass do not depend on them being free. A port
// another process held at the start and has let go since is taken now, until the end.
func TestDefaultPortsAreTaken(t *testing.T) {
	t.Parallel()
	for _, addr := range defaultPorts {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
			continue
		}
		l, lerr := net.Listen("tcp", addr)
		require.NoError(t, lerr, "%s is neither held nor free", addr)
		go closeEvery(l) // held until the test binary exits
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		require.NoError(t, err, "%s is held during the tests", addr)
		c.Close()
	}
}

// runIn runs the binary in dir with env added and stdin, and returns its exit code,
// standard output and standard error.
func runIn(t *testing.T, dir string, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	require.NoError(t, err)
	return 0, stdout.String(), stderr.String()
}

// checkout is a directory with the repository's tokenizer.yaml, as a fresh clone has.
func checkout(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	yaml, err := os.ReadFile("../../tokenizer.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.yaml"), yaml, 0o600))
	return dir
}

// TestFirstRunAgainstAnotherKeysDatabase is issue 11's first run: a database that
// another checkout's key file initialized. `make run`'s start-up (serve beside the
// repository's tokenizer.yaml) exits non-zero within 5 s, naming the cause and the
// ways out; commands say which database and keys they use and refuse it; `tokenizer
// dev reset` asks, refuses outside development, and then gives a database that
// serves.
func TestFirstRunAgainstAnotherKeysDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	name := db[strings.LastIndex(db, "/")+1:]
	name, _, _ = strings.Cut(name, "?")
	env := []string{"TOKENIZER_DATABASE_URL=" + db}
	other, mine := checkout(t), checkout(t)

	code, _, stderr := runIn(t, other, env, "", "migrate")
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasPrefix(stderr, "tokenizer migrate: database postgres://"), stderr)
	code, stdout, stderr := runIn(t, other, env, "", "keys", "status")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "audit-digest", "the other checkout created its data keys")
	first, _, _ := strings.Cut(stderr, "\n")
	assert.Contains(t, first, "tokenizer keys status: database postgres://")
	assert.Contains(t, first, name)
	assert.Contains(t, first, "keys from local key file .tokenizer/dev-kek.hex")

	start := time.Now()
	p := startProcIn(t, mine, env, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "serve must fail")
		assert.NotEqual(t, 0, ee.ExitCode())
		t.Logf("serve exited after %v", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatalf("serve still running after 5 s; log:\n%s", strings.Join(p.lines(), "\n"))
	}
	logs := strings.Join(p.lines(), "\n")
	for _, want := range []string{name, "wrapped by a different key file", "use the key file they were created with", "use a different database", "tokenizer dev reset"} {
		assert.Contains(t, logs, want)
	}
	assert.NotContains(t, logs, "retrying", "a mismatch is not retried")
	assert.Contains(t, "\n"+logs, "\ntokenizer serve: database postgres://", "said plainly, not only as a log attribute")

	for _, args := range [][]string{{"keys", "status"}, {"keys", "rotate"}, {"audit", "verify"}} {
		code, _, stderr := runIn(t, mine, env, "", args...)
		assert.Equal(t, 1, code, "%v refuses", args)
		first, rest, _ := strings.Cut(stderr, "\n")
		assert.Contains(t, first, "database postgres://", args)
		assert.Contains(t, rest, "wrapped by a different key file", args)
	}

	code, _, stderr = runIn(t, mine, env, "no\n", "dev", "reset")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "This drops the database "+name)
	assert.Contains(t, stderr, "not confirmed; nothing changed")
	code, _, stderr = runIn(t, mine, env, "", "dev", "reset", "--yes", "--dev=false", "--insecure=false", "--keys-provider", "vault", "--keys-vault-address", "http://127.0.0.1:1", "--keys-vault-token", "x")
	assert.Equal(t, 2, code, stderr)
	assert.Contains(t, stderr, "development only")
	code, _, stderr = runIn(t, other, env, "", "keys", "status")
	require.Equal(t, 0, code, "nothing was dropped: %s", stderr)

	code, stdout, stderr = runIn(t, mine, env, "", "dev", "reset", "--yes")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "dropped database "+name)
	assert.Contains(t, stdout, "created key file .tokenizer/dev-kek.hex and database "+name)
	code, _, stderr = runIn(t, other, env, "", "keys", "status")
	assert.Equal(t, 1, code, "the database is now the other checkout's key's: %s", stderr)

	p = startProcIn(t, mine, append(env, "TOKENIZER_LOG_FORMAT=json"), "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
	waitReady(t, p.field("listening", "admin"))
	assert.Contains(t, p.field("starting", "database"), name, "serve logs its database")
	assert.Equal(t, "local key file .tokenizer/dev-kek.hex", p.field("starting", "keys"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.NoError(t, <-p.done)
}

// TestFirstCommandSaysItCreatedTheKeyFile: the first command in a new checkout says, after
// the line naming its database, that it created the development key file; later ones do
// not, and no log line claims otherwise.
func TestFirstCommandSaysItCreatedTheKeyFile(t *testing.T) {
	t.Parallel()
	dir := checkout(t)
	_, _, stderr := runIn(t, dir, nil, "", "keys", "status", "--dev")
	lines := strings.Split(stderr, "\n")
	require.GreaterOrEqual(t, len(lines), 2, stderr)
	assert.Contains(t, lines[0], "tokenizer keys status: database postgres://")
	assert.Contains(t, lines[1], "created the development key file .tokenizer/dev-kek.hex")
	assert.NotContains(t, stderr, "created=false")
	_, _, stderr = runIn(t, dir, nil, "", "keys", "status", "--dev")
	assert.NotContains(t, stderr, "created the development key file", "only the first time")
}
