package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/phivault/tokenizer/internal/keys"
)

// Subjects is the production keys.SubjectVault: each subject key lives in Vault's KV
// version 2 engine at <mount>/data/<prefix>/<ref>, wrapped by the Transit KEK; an
// erasure deletes the key's metadata, which destroys every version. Nothing about the
// subject key is in PostgreSQL but its random reference, so a database backup cannot
// bring it back (docs/subjects.md).
type Subjects struct {
	p             *Provider
	mount, prefix string
}

var _ keys.SubjectVault = (*Subjects)(nil)

// NewSubjects returns the subject key vault in KV v2 mount under prefix.
func NewSubjects(p *Provider, mount, prefix string) *Subjects {
	return &Subjects{p: p, mount: strings.Trim(mount, "/"), prefix: strings.Trim(prefix, "/")}
}

func (s *Subjects) path(kind, ref string) (string, error) {
	if !keys.ValidSubjectRef(ref) {
		return "", fmt.Errorf("subject key reference: malformed")
	}
	return s.mount + "/" + kind + "/" + s.prefix + "/" + ref, nil
}

// NewSubjectKey creates a data key with Transit and stores its wrapped form in KV,
// refusing to overwrite (check-and-set 0).
func (s *Subjects) NewSubjectKey(ctx context.Context, ref string) ([]byte, error) {
	p, err := s.path("data", ref)
	if err != nil {
		return nil, err
	}
	dk, wrapped, err := s.p.NewDataKey(ctx)
	if err != nil {
		return nil, err
	}
	_, err = s.p.c.write(ctx, "store subject key", p, map[string]any{
		"options": map[string]any{"cas": 0},
		"data":    map[string]any{"wrapped": string(wrapped)},
	})
	if err != nil {
		return nil, err
	}
	return dk, nil
}

// SubjectKey reads the wrapped key from KV and unwraps it with Transit.
func (s *Subjects) SubjectKey(ctx context.Context, ref string) ([]byte, error) {
	p, err := s.path("data", ref)
	if err != nil {
		return nil, err
	}
	c := s.p.c
	if err := c.ensureLogin(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout*time.Duration(c.cfg.MaxRetries+1))
	defer cancel()
	sec, err := c.api.Logical().ReadWithContext(rctx, p)
	if err != nil {
		return nil, classify("read subject key", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, keys.ErrSubjectKeyGone
	}
	data, _ := sec.Data["data"].(map[string]any)
	wrapped, _ := data["wrapped"].(string)
	if wrapped == "" {
		return nil, keys.ErrSubjectKeyGone // deleted or destroyed version
	}
	return s.p.Unwrap(ctx, []byte(wrapped))
}

// DestroySubjectKey deletes the key's KV metadata: every version is destroyed.
func (s *Subjects) DestroySubjectKey(ctx context.Context, ref string) error {
	p, err := s.path("metadata", ref)
	if err != nil {
		return err
	}
	c := s.p.c
	if err := c.ensureLogin(ctx); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout*time.Duration(c.cfg.MaxRetries+1))
	defer cancel()
	if _, err := c.api.Logical().DeleteWithContext(dctx, p); err != nil {
		return classify("destroy subject key", err)
	}
	return nil
}

// PublicKey returns the ed25519 public key of the Transit signing key version that
// made signature ("vault:v<n>:..."), so that audit receipts verify offline.
func (v *Provider) PublicKey(ctx context.Context, signature string) (ed25519.PublicKey, error) {
	parts := strings.SplitN(signature, ":", 3)
	if len(parts) != 3 || !strings.HasPrefix(parts[1], "v") {
		return nil, fmt.Errorf("signature: not a Vault Transit signature")
	}
	c := v.c
	if err := c.ensureLogin(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout*time.Duration(c.cfg.MaxRetries+1))
	defer cancel()
	sec, err := c.api.Logical().ReadWithContext(rctx, c.transit("keys", c.cfg.SigningKey))
	if err != nil {
		return nil, classify("read signing key", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("vault signing key: not found")
	}
	versions, _ := sec.Data["keys"].(map[string]any)
	entry, _ := versions[strings.TrimPrefix(parts[1], "v")].(map[string]any)
	b64, _ := entry["public_key"].(string)
	pub, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("vault signing key %s: no ed25519 public key", parts[1])
	}
	return ed25519.PublicKey(pub), nil
}
