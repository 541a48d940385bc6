package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/phivault/tokenizer/internal/keys"
)

// Provider is the production key provider: it wraps data keys with a Vault Transit
// key and signs audit checkpoints with a Transit ed25519 key. It implements
// keys.Provider, keys.Rewrapper and keys.Signer; the keys package knows nothing of
// Vault (smallstep's habit: a backend lives beside its client, behind the interface).
type Provider struct {
	c *Client
}

var (
	_ keys.Provider  = (*Provider)(nil)
	_ keys.Rewrapper = (*Provider)(nil)
	_ keys.Signer    = (*Provider)(nil)
)

// NewProvider returns the Vault key provider over c.
func NewProvider(c *Client) *Provider { return &Provider{c: c} }

// Name returns "vault".
func (v *Provider) Name() string { return "vault" }

// NewDataKey asks Transit for a wrapped data key and unwraps it.
func (v *Provider) NewDataKey(ctx context.Context) ([]byte, []byte, error) {
	wrapped, err := v.c.DataKey(ctx)
	if err != nil {
		return nil, nil, err
	}
	dk, err := v.c.Decrypt(ctx, wrapped)
	if err != nil {
		return nil, nil, err
	}
	if len(dk) != keys.DataKeySize {
		return nil, nil, fmt.Errorf("vault returned a %d-byte data key, want %d", len(dk), keys.DataKeySize)
	}
	return dk, []byte(wrapped), nil
}

// Unwrap decrypts a wrapped data key with Transit. A key Transit refuses to decrypt
// (other than for lack of permission) does not authenticate: keys.ErrCorrupt.
func (v *Provider) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	dk, err := v.c.Decrypt(ctx, string(wrapped))
	if err != nil && errors.Is(err, ErrRejected) && !errors.Is(err, ErrPermission) {
		return nil, fmt.Errorf("%w: %w", keys.ErrCorrupt, err)
	}
	return dk, err
}

// Rewrap re-encrypts a wrapped key under the newest KEK version.
func (v *Provider) Rewrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	out, err := v.c.Rewrap(ctx, string(wrapped))
	if err != nil {
		return nil, err
	}
	return []byte(out), nil
}

// Sign signs with the Transit signing key.
func (v *Provider) Sign(ctx context.Context, message []byte) (string, error) {
	return v.c.Sign(ctx, message)
}

// Verify checks a Transit signature.
func (v *Provider) Verify(ctx context.Context, message []byte, signature string) (bool, error) {
	return v.c.Verify(ctx, message, signature)
}

// Check reports whether Vault can serve.
func (v *Provider) Check(ctx context.Context) error { return v.c.Check(ctx) }
