package keys

import (
	"context"
	"errors"
	"fmt"

	"github.com/phivault/tokenizer/internal/vault"
)

// VaultProvider wraps data keys with a HashiCorp Vault Transit key and signs with a
// Transit ed25519 key. It implements Provider, Rewrapper and Signer.
type VaultProvider struct {
	c *vault.Client
}

// NewVaultProvider returns the production provider.
func NewVaultProvider(c *vault.Client) *VaultProvider { return &VaultProvider{c: c} }

// Name returns "vault".
func (v *VaultProvider) Name() string { return "vault" }

func wrapVaultErr(err error) error {
	if errors.Is(err, vault.ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// NewDataKey asks Transit for a wrapped data key and unwraps it.
func (v *VaultProvider) NewDataKey(ctx context.Context) ([]byte, []byte, error) {
	wrapped, err := v.c.DataKey(ctx)
	if err != nil {
		return nil, nil, wrapVaultErr(err)
	}
	dk, err := v.c.Decrypt(ctx, wrapped)
	if err != nil {
		return nil, nil, wrapVaultErr(err)
	}
	if len(dk) != DataKeySize {
		return nil, nil, fmt.Errorf("vault returned a %d-byte data key, want %d", len(dk), DataKeySize)
	}
	return dk, []byte(wrapped), nil
}

// Unwrap decrypts a wrapped data key with Transit.
func (v *VaultProvider) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	dk, err := v.c.Decrypt(ctx, string(wrapped))
	if err != nil {
		if errors.Is(err, vault.ErrRejected) && !errors.Is(err, vault.ErrPermission) {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return nil, wrapVaultErr(err)
	}
	return dk, nil
}

// Rewrap re-encrypts a wrapped key under the newest KEK version.
func (v *VaultProvider) Rewrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	out, err := v.c.Rewrap(ctx, string(wrapped))
	if err != nil {
		return nil, wrapVaultErr(err)
	}
	return []byte(out), nil
}

// Sign signs with the Transit signing key.
func (v *VaultProvider) Sign(ctx context.Context, message []byte) (string, error) {
	s, err := v.c.Sign(ctx, message)
	return s, wrapVaultErr(err)
}

// Verify checks a Transit signature.
func (v *VaultProvider) Verify(ctx context.Context, message []byte, signature string) (bool, error) {
	ok, err := v.c.Verify(ctx, message, signature)
	return ok, wrapVaultErr(err)
}

// Check reports whether Vault can serve.
func (v *VaultProvider) Check(ctx context.Context) error { return wrapVaultErr(v.c.Check(ctx)) }
