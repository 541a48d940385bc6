// Package keys holds the data keys of the service: versioned per purpose, stored only
// wrapped (encrypted under a key-encryption key that a Provider holds), and kept
// unwrapped in memory only.
package keys

import (
	"context"
	"errors"
)

// DataKeySize is the length of every data key: 256 bits.
const DataKeySize = 32

// Provider wraps and unwraps data keys under a key-encryption key it never reveals.
// Vault Transit is the production provider; a local key file serves development.
type Provider interface {
	// Name identifies the provider in stored key records ("local", "vault").
	Name() string
	// NewDataKey returns a fresh data key and its wrapped form.
	NewDataKey(ctx context.Context) (plaintext, wrapped []byte, err error)
	// Unwrap returns the plaintext of a wrapped data key.
	Unwrap(ctx context.Context, wrapped []byte) ([]byte, error)
	// Check reports whether the provider can serve requests now.
	Check(ctx context.Context) error
}

// Rewrapper is implemented by providers whose key-encryption key rotates: Rewrap
// re-encrypts a wrapped key under the newest KEK version without revealing it.
type Rewrapper interface {
	Rewrap(ctx context.Context, wrapped []byte) ([]byte, error)
}

// Signer is implemented by providers that can sign (audit checkpoints).
type Signer interface {
	Sign(ctx context.Context, message []byte) (signature string, err error)
	Verify(ctx context.Context, message []byte, signature string) (bool, error)
}

// ErrCorrupt is wrapped when a wrapped key does not authenticate.
var ErrCorrupt = errors.New("wrapped data key does not authenticate")
