// Package vaulttest starts a real HashiCorp Vault dev server for tests: the binary
// built from tools/vaultdev (`make vault`), on a free loopback port, with Transit
// enabled and the service's keys created.
package vaulttest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// RootToken is the dev server's root token.
const RootToken = "tokenizer-test-root"

// KEK and SigningKey are the Transit keys created for the service.
const (
	KEK        = "tokenizer-kek"
	SigningKey = "tokenizer-audit"
)

// Server is a running dev server.
type Server struct {
	Addr   string // http://127.0.0.1:port
	Client *api.Client
	cmd    *exec.Cmd
	out    *lockedBuffer
}

// lockedBuffer collects the server's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Binary returns the path of the vault binary built by `make vault`.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("TOKENIZER_VAULT_BIN"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "vaultdev", "go.mod")); err == nil {
			p := filepath.Join(dir, ".cache", "vaultdev", "vault")
			if _, err := os.Stat(p); err != nil {
				tb.Fatalf("vaulttest: %s is missing: run `make vault` (make test does)", p)
			}
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("vaulttest: repository root not found")
		}
		dir = parent
	}
}

var portMu sync.Mutex

func freePort(tb testing.TB) string {
	portMu.Lock()
	defer portMu.Unlock()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs a dev server until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Binary(tb)
	var s *Server
	for attempt := 0; attempt < 3; attempt++ {
		addr := freePort(tb)
		out := &lockedBuffer{}
		cmd := exec.Command(bin, "server", "-dev", "-dev-root-token-id="+RootToken, "-dev-listen-address="+addr, "-dev-no-store-token")
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), "VAULT_LOG_LEVEL=warn", "HOME="+tb.TempDir())
		if err := cmd.Start(); err != nil {
			tb.Fatalf("vaulttest: start: %v", err)
		}
		s = &Server{Addr: "http://" + addr, cmd: cmd, out: out}
		if s.wait(tb) {
			break
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		s = nil
	}
	if s == nil {
		tb.Fatal("vaulttest: dev server did not start")
	}
	tb.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
	s.mustWrite(tb, "sys/mounts/transit", map[string]any{"type": "transit"})
	s.mustWrite(tb, "transit/keys/"+KEK, map[string]any{"type": "aes256-gcm96"})
	s.mustWrite(tb, "transit/keys/"+SigningKey, map[string]any{"type": "ed25519"})
	return s
}

func (s *Server) wait(tb testing.TB) bool {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetToken(RootToken)
	s.Client = c
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := c.Sys().HealthWithContext(ctx)
		cancel()
		if err == nil && h.Initialized && !h.Sealed {
			return true
		}
		if strings.Contains(s.out.String(), "address already in use") {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (s *Server) mustWrite(tb testing.TB, path string, data map[string]any) *api.Secret {
	tb.Helper()
	sec, err := s.Client.Logical().Write(path, data)
	if err != nil {
		tb.Fatalf("vaulttest: write %s: %v", path, err)
	}
	return sec
}

// Write writes to Vault as root.
func (s *Server) Write(tb testing.TB, path string, data map[string]any) *api.Secret {
	tb.Helper()
	return s.mustWrite(tb, path, data)
}

// RotateKEK rotates the key-encryption key in Transit.
func (s *Server) RotateKEK(tb testing.TB) {
	tb.Helper()
	s.mustWrite(tb, "transit/keys/"+KEK+"/rotate", nil)
}

// ServicePolicy writes the Vault policy "tokenizer": what the service needs of Transit,
// and of KV for subject keys (docs/subjects.md).
func (s *Server) ServicePolicy(tb testing.TB) {
	tb.Helper()
	policy := fmt.Sprintf(`
path "transit/datakey/wrapped/%[1]s" { capabilities = ["update"] }
path "transit/decrypt/%[1]s" { capabilities = ["update"] }
path "transit/rewrap/%[1]s" { capabilities = ["update"] }
path "transit/sign/%[2]s" { capabilities = ["update"] }
path "transit/verify/%[2]s" { capabilities = ["update"] }
path "transit/keys/%[2]s" { capabilities = ["read"] }
path "secret/data/tokenizer/subjects/*" { capabilities = ["create", "read"] }
path "secret/metadata/tokenizer/subjects/*" { capabilities = ["delete"] }
`, KEK, SigningKey)
	if err := s.Client.Sys().PutPolicy("tokenizer", policy); err != nil {
		tb.Fatalf("vaulttest: policy: %v", err)
	}
}

// AppRole enables AppRole auth with a role allowed to use the service's Transit keys
// and returns its role ID and a secret ID. tokenTTL bounds the tokens it issues.
func (s *Server) AppRole(tb testing.TB, tokenTTL string) (roleID, secretID string) {
	tb.Helper()
	s.ServicePolicy(tb)
	if err := s.Client.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil && !strings.Contains(err.Error(), "path is already in use") {
		tb.Fatalf("vaulttest: enable approle: %v", err)
	}
	s.mustWrite(tb, "auth/approle/role/tokenizer", map[string]any{"token_policies": "tokenizer", "token_ttl": tokenTTL, "token_max_ttl": tokenTTL})
	r, err := s.Client.Logical().Read("auth/approle/role/tokenizer/role-id")
	if err != nil {
		tb.Fatalf("vaulttest: role id: %v", err)
	}
	sec := s.mustWrite(tb, "auth/approle/role/tokenizer/secret-id", nil)
	return r.Data["role_id"].(string), sec.Data["secret_id"].(string)
}
