package bulk_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// binary is the tokenizer built once for these tests: the service and the client.
var binary string

// buildFlags are the go build flags of binary.
var buildFlags []string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenizer-bulk-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tokenizer")
	out, err := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", binary, "../../cmd/tokenizer")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tokenizer: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// service is a `tokenizer serve --dev --insecure` process on free ports with a fresh
// database.
type service struct {
	grpc, http, admin string
	dbURL             string
}

func startService(t *testing.T) *service {
	t.Helper()
	db := pgtest.NewDatabase(t)
	cmd := exec.Command(binary, "serve", "--dev", "--insecure",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "TOKENIZER_DATABASE_URL="+db, "TOKENIZER_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrs := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var once sync.Once
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				once.Do(func() { addrs <- m })
			}
		}
	}()
	var m map[string]any
	select {
	case m = <-addrs:
	case <-time.After(30 * time.Second):
		t.Fatal("service did not start")
	}
	s := &service{grpc: m["grpc"].(string), http: m["http"].(string), admin: m["admin"].(string), dbURL: db}
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + s.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "service not ready")
	return s
}

// result is one finished client run.
type result struct {
	code   int
	stderr string
}

// client runs `tokenizer args...` against s and waits for it.
func (s *service) client(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--insecure", "--grpc", s.grpc)...)
	var errb strings.Builder
	cmd.Stderr = &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code: code, stderr: errb.String()}
}
