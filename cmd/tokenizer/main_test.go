package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenizer-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tokenizer")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tokenizer: %v\n%s", err, out)
		os.Exit(1)
	}
	release := occupyDefaultPorts()
	code := m.Run()
	release()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a tokenizer process whose stderr (JSON logs) is collected.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []string
	done chan error
}

func (p *proc) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// field returns attribute key of the first log line with message msg.
func (p *proc) field(msg, key string) string {
	for _, l := range p.lines() {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			if s, ok := m[key].(string); ok {
				return s
			}
		}
	}
	return ""
}

func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, t.TempDir(), env, args...)
}

func waitReady(t *testing.T, adminAddr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "service not ready")
}

// TestGracefulShutdown holds a stream open across SIGTERM: the request in flight
// completes, and only then does the process exit, with status 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	p := startProc(t, []string{"TOKENIZER_DATABASE_URL=" + db, "TOKENIZER_LOG_FORMAT=json"},
		"serve", "--dev", "--insecure", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
	waitReady(t, p.field("listening", "admin"))

	conn, err := grpc.NewClient(p.field("listening", "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := tokenizerv1.NewTokenizerServiceClient(conn)
	stream, err := client.TokenizeStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}}))
	_, err = stream.Recv()
	require.NoError(t, err)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		for _, l := range p.lines() {
			if strings.Contains(l, "shutting down") {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)

	// The stream began before SIGTERM: it is still served.
	require.NoError(t, stream.Send(&tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "234-56-7890"}}}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	assert.Regexp(t, `^9\d\d-\d\d-\d{4}$`, resp.Results[0].Token)
	select {
	case <-p.done:
		t.Fatal("process exited while a request was in flight")
	default:
	}
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	assert.ErrorIs(t, err, io.EOF)

	select {
	case err := <-p.done:
		assert.NoError(t, err, "exit status")
	case <-time.After(30 * time.Second):
		t.Fatal("process did not exit after the stream finished")
	}
	// New connections are refused once it has gone.
	_, err = client.Tokenize(context.Background(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}})
	assert.Error(t, err)
}

// readmeExamples returns the shell block under "### Examples" in the README.
func readmeExamples(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(raw), "### Examples")
	require.True(t, ok, "README has an Examples section")
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(after)
	require.NotNil(t, m, "Examples section has a sh block")
	return m[1]
}

// TestREADMEExamples runs the README's examples as written against the service as
// `make run` starts it, on free ports: the examples' default ports are rewritten to
// the ones the service bound (TestMain holds the default ports, as a `make run` in
// another terminal would).
func TestREADMEExamples(t *testing.T) {
	tools, err := filepath.Abs("../../.cache/tools")
	require.NoError(t, err)
	path := tools + string(os.PathListSeparator) + os.Getenv("PATH")
	_, err = exec.LookPath(filepath.Join(tools, "grpcurl"))
	require.NoError(t, err, "grpcurl is missing: run `make tools` (make test does)")

	// As `make run`: `tokenizer serve` beside the repository's tokenizer.yaml (here with
	// a fresh database).
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	yaml, err := os.ReadFile("../../tokenizer.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.yaml"), yaml, 0o600))
	p := startProcIn(t, dir, []string{"TOKENIZER_DATABASE_URL=" + db, "TOKENIZER_LOG_FORMAT=json"},
		"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
	waitReady(t, p.field("listening", "admin"))

	script := readmeExamples(t)
	require.Contains(t, script, "127.0.0.1:8080")
	require.Contains(t, script, "127.0.0.1:9090")
	script = strings.NewReplacer("127.0.0.1:8080", p.field("listening", "http"), "127.0.0.1:9090", p.field("listening", "grpc")).Replace(script)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+path)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "README examples failed:\n%s", out)
	o := string(out)
	assert.Regexp(t, `\{"results":\[\{"reference":"r1","token":"9\d\d-\d\d-\d{4}"\}\]\}`, o)
	assert.Contains(t, o, `{"results":[{"reference":"r1","value":"123-45-6789"}]}`)
	assert.Contains(t, o, "tokenizer.v1.TokenizerService")
	assert.Contains(t, o, "tokenizer.v1.AuditService")
	assert.Contains(t, o, "grpc.health.v1.Health")
	assert.Regexp(t, `"token": "9\d\d-\d\d-\d{4}"`, o, "grpcurl tokenize")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		assert.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	run := func(env []string, args ...string) (int, string) {
		cmd := exec.Command(binary, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		require.NoError(t, err)
		return 0, string(out)
	}
	code, out := run(nil, "version")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "tokenizer")

	code, out = run(nil, "serve", "--grpc-addr", "nonsense")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "grpc_addr: want host:port")

	code, out = run(nil, "serve", "--keys-provider", "local", "--insecure")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "keys.provider: the local key provider is for development only")

	code, out = run([]string{"TOKENIZER_LIMITS_MAX_ITEMS=lots"}, "serve", "--dev", "--insecure")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "TOKENIZER_LIMITS_MAX_ITEMS: want a whole number")

	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("dev: true\ninsecure: true\nclasses:\n  - name: ssn\n    format: ssn\n    mode: sometimes\n"), 0o600))
	code, out = run(nil, "serve", "--config", cfg)
	assert.Equal(t, 2, code)
	assert.Contains(t, out, `classes[0]: class ssn: mode "sometimes"`)

	db := pgtest.NewDatabase(t)
	code, out = run([]string{"TOKENIZER_DATABASE_URL=" + db}, "migrate")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "applied migrations [1 2 ")
	assert.Contains(t, out, fmt.Sprintf("schema is at version %d", store.LatestVersion()))
	code, out = run([]string{"TOKENIZER_DATABASE_URL=" + db}, "migrate")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "up to date")

	code, _ = run(nil, "frobnicate")
	assert.Equal(t, 2, code)
}

// TestStaticTokensAcrossTwoProcesses runs two service processes on one database: 32
// clients tokenizing the same new values at the same moment through both get exactly
// one token per value, and each process detokenizes the other's tokens.
func TestStaticTokensAcrossTwoProcesses(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	keyFile := filepath.Join(t.TempDir(), "kek.hex")
	var procs []*proc
	for range 2 {
		p := startProc(t, []string{"TOKENIZER_DATABASE_URL=" + db, "TOKENIZER_LOG_FORMAT=json", "TOKENIZER_KEYS_LOCAL_FILE=" + keyFile},
			"serve", "--dev", "--insecure", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
		require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
		waitReady(t, p.field("listening", "admin"))
		procs = append(procs, p)
	}
	var clients []tokenizerv1.TokenizerServiceClient
	for _, p := range procs {
		conn, err := grpc.NewClient(p.field("listening", "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer conn.Close()
		clients = append(clients, tokenizerv1.NewTokenizerServiceClient(conn))
	}
	values := []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "601-23-4567"}, {Class: "email", Value: "pat.doe@example.org"},
		{Class: "mrn", Value: "MRN-31415926"}, {Class: "ssn_fpe", Value: "601-23-4567"},
	}
	const n = 32
	got := make([][]string, n)
	errc := make(chan error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			resp, err := clients[i%2].Tokenize(context.Background(), &tokenizerv1.TokenizeRequest{Items: values})
			if err != nil {
				errc <- err
				return
			}
			for _, r := range resp.Results {
				if r.Error != nil {
					errc <- fmt.Errorf("item error: %s", r.Error.Message)
					return
				}
				got[i] = append(got[i], r.Token)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}
	for i := range n {
		assert.Equal(t, got[0], got[i], "client %d", i)
	}
	assert.Equal(t, int64(len(values)), pgtest.Count(t, db, "SELECT count(*) FROM tokens"), "one mapping per value")
	for i, c := range clients {
		var items []*tokenizerv1.DetokenizeItem
		for j, v := range values {
			items = append(items, &tokenizerv1.DetokenizeItem{Class: v.Class, Token: got[0][j]})
		}
		out, err := c.Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: items})
		require.NoError(t, err)
		for j, v := range values {
			assert.Equal(t, v.Value, out.Results[j].Value, "process %d", i)
		}
	}
}

// TestAuditCommands runs `tokenizer audit verify|export|disclosures` the way an auditor
// would, beside a running service, with the same configuration (a tokenizer.yaml in
// the working directory, as `make run` has).
func TestAuditCommands(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.yaml"), []byte(fmt.Sprintf(`dev: true
insecure: true
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
admin_addr: 127.0.0.1:0
log:
  format: json
database:
  url: %s
audit:
  checkpoint_sink: checkpoints.jsonl
  checkpoint_every: 3
`, db)), 0o600))
	run := func(args ...string) (int, string) {
		code, stdout, stderr := runIn(t, dir, nil, "", args...)
		return code, stdout + stderr // stdout first: the export's own bytes
	}

	p := startProcIn(t, dir, nil, "serve")
	require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
	waitReady(t, p.field("listening", "admin"))
	conn, err := grpc.NewClient(p.field("listening", "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	c := tokenizerv1.NewTokenizerServiceClient(conn)
	resp, err := c.Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "555-44-3333"}}})
	require.NoError(t, err)
	tok := resp.Results[0].Token
	for _, purpose := range []string{"TREAT", "HOPERAT", "PUBHLTH"} {
		_, err := c.Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: purpose, Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok}}})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "checkpoints.jsonl"))
		return len(b) > 0
	}, 10*time.Second, 50*time.Millisecond, "a checkpoint reaches the sink")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	<-p.done

	code, out := run("audit", "verify", "--checkpoint", "checkpoints.jsonl")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "OK: 4 events")

	code, out = run("audit", "disclosures", "--class", "ssn", "--token", tok)
	require.Equal(t, 0, code, out)
	assert.Equal(t, 3, strings.Count(out, `"purpose_of_use"`), out)
	assert.Contains(t, out, `"purpose_of_use":"PUBHLTH"`)

	code, out = run("audit", "export", "--format", "csv")
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `(?m)^seq,time,request_id`, out) // after the development-key warning on stderr
	assert.Contains(t, out, "list_disclosures", "the CLI's own queries are audited")

	// A superuser rewrites event 2: verify fails, names seq 2, exits non-zero.
	pgtest.Exec(t, db, `SET session_replication_role = replica; UPDATE audit_events SET body = replace(body, 'HOPERAT', 'TREAT') WHERE seq = 3`)
	code, out = run("audit", "verify")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "FAILED at seq 3")

	// Issue 10, finding 4: a superuser wipes the log and the stored checkpoints; verify
	// without --checkpoint holds the chain to the configured sink and fails.
	pgtest.Exec(t, db, `SET session_replication_role = replica; DELETE FROM audit_events; DELETE FROM audit_checkpoints`)
	code, out = run("audit", "verify")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "truncated")
}

// startProcIn is startProc in a given working directory.
func startProcIn(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs = append(p.logs, sc.Text())
			p.mu.Unlock()
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// TestPolicyReloadOnSIGHUP serves mTLS from a real process and reloads its policy on
// SIGHUP. The new file has the old size and modification time, so only the signal
// can have triggered the reload.
func TestPolicyReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "test CA")
	srv := ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	analyst := ca.Issue(t, pkitest.Options{CN: "analyst"})
	pkitest.Write(t, dir, "server.crt", srv.CertPEM)
	pkitest.Write(t, dir, "server.key", srv.KeyPEM)
	pkitest.Write(t, dir, "ca.pem", ca.PEM)
	masked := "principals:\n  - id: analyst\n    acknowledge_oracle: true\n    classes:\n      ssn: [tokenize, detokenize_masked]\n    purposes: [TREAT]\n"
	full := strings.Replace(masked, "detokenize_masked]", "detokenize]       ", 1)
	require.Equal(t, len(masked), len(full))
	policyFile := pkitest.Write(t, dir, "policy.yaml", []byte(masked))
	fi, err := os.Stat(policyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.yaml"), []byte(fmt.Sprintf(`dev: true
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
admin_addr: 127.0.0.1:0
log: {format: json}
database: {url: %q}
tls: {cert_file: server.crt, key_file: server.key, client_ca_file: ca.pem}
policy_file: policy.yaml
audit: {checkpoint_sink: none}
`, db)), 0o600))
	p := startProcIn(t, dir, nil, "serve")
	require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
	waitReady(t, p.field("listening", "admin"))
	conn, err := grpc.NewClient(p.field("listening", "grpc"), grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(ca, &analyst))))
	require.NoError(t, err)
	defer conn.Close()
	c := tokenizerv1.NewTokenizerServiceClient(conn)
	tok, err := c.Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "321-65-4987"}}})
	require.NoError(t, err)
	reveal := func() *tokenizerv1.DetokenizeResult {
		out, err := c.Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}})
		require.NoError(t, err)
		return out.Results[0]
	}
	assert.Equal(t, "***-**-4987", reveal().Value)

	require.NoError(t, os.WriteFile(policyFile, []byte(full), 0o600))
	require.NoError(t, os.Chtimes(policyFile, fi.ModTime(), fi.ModTime()))
	time.Sleep(1500 * time.Millisecond)
	assert.Equal(t, "***-**-4987", reveal().Value, "no reload without the signal")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return reveal().Value == "321-65-4987" }, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.NoError(t, <-p.done)
}

// TestGRPCLogLinesUseTheServiceFormat: grpc-go's and the generated gateway's own log lines
// (a REST stream line that does not decode makes one) go through the service's logger:
// with JSON logs, every line the process writes is a JSON object.
func TestGRPCLogLinesUseTheServiceFormat(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	p := startProc(t, []string{"TOKENIZER_DATABASE_URL=" + db, "TOKENIZER_LOG_FORMAT=json", "TOKENIZER_LOG_LEVEL=debug"},
		"serve", "--dev", "--insecure", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
	waitReady(t, p.field("listening", "admin"))
	body := `{"items":[{"class":"ssn","value":"123-45-6789"}]}` + "\n" + `{"itemz":[]}` + "\n"
	resp, err := http.Post("http://"+p.field("listening", "http")+"/v1/tokenize:stream", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-p.done)
	found := false
	for _, l := range p.lines() {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), "not a JSON log line: %s", l)
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, "grpc: ") && strings.Contains(msg, "itemz") {
			found = true
			assert.Equal(t, "WARN", m["level"])
		}
		assert.NotContains(t, l, "123-45-6789")
	}
	assert.True(t, found, "the gateway's decode error went through the service's logger")
}
