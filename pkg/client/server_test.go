package client_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// The package's tests and examples run against a real tokenizer process: TestMain
// builds the binary and starts one development server (plaintext, allow-all policy)
// on a fresh database; tests that need mTLS, a policy or a late start run their own.
var (
	binary  string
	devGRPC string // gRPC address of the shared development server
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tokenizer-client-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "tokenizer")
	if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/tokenizer").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build tokenizer: %v\n%s", err, out)
		return 1
	}
	db, drop, err := createDatabase()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer drop()
	srv, err := startServer(filepath.Join(dir, "dev"), db, nil, "--dev", "--insecure")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.stop()
	if err := srv.waitReady(60 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err, srv.logTail())
		return 1
	}
	devGRPC = srv.grpc
	return m.Run()
}

// createDatabase creates an empty database on the test PostgreSQL (as pgtest does, for
// TestMain, which has no testing.T) and returns its URL and a function that drops it.
func createDatabase() (string, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		return "", nil, fmt.Errorf("connect to the test PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "tokenizer_client_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, pgtest.ServerURL()); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	u, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		drop()
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// server is a running `tokenizer serve` process.
type server struct {
	cmd               *exec.Cmd
	grpc, http, admin string
	done              chan error
	mu                sync.Mutex
	logs              []string
}

// startServer runs `tokenizer serve args...` in dir (created if missing) against the
// database db, with JSON logs. Addresses not given in args are 127.0.0.1:0; the
// chosen ones are read from the "listening" log line.
func startServer(dir, db string, env []string, args ...string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	all := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(binary, all...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"TOKENIZER_DATABASE_URL=" + db, "TOKENIZER_LOG_FORMAT=json", "TOKENIZER_AUDIT_CHECKPOINT_SINK=none"}, env...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan error, 1)}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.mu.Lock()
			s.logs = append(s.logs, sc.Text())
			s.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" && s.grpc == "" {
				s.grpc, _ = m["grpc"].(string)
				s.http, _ = m["http"].(string)
				s.admin, _ = m["admin"].(string)
				close(listening)
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case <-listening:
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("tokenizer serve exited (%v): %s", err, s.logTail())
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, errors.New("tokenizer serve did not listen within 60 s: " + s.logTail())
	}
}

// waitReady polls /readyz until it answers 200.
func (s *server) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + s.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("tokenizer serve not ready within %s", within)
}

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
}

func (s *server) logTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := max(0, len(s.logs)-20)
	out := ""
	for _, l := range s.logs[from:] {
		out += l + "\n"
	}
	return out
}

// startTestServer is startServer for a test: a fresh database, stopped at the end,
// ready when it returns.
func startTestServer(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	s, err := startServer(dir, pgtest.NewDatabase(t), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	if err := s.waitReady(60 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, s.logTail())
	}
	return s
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
