package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Local is the development provider: the key-encryption key is a file on local disk.
// It exists so that the service runs without Vault; it is not for PHI.
type Local struct {
	aead cipher.AEAD
	sign ed25519.PrivateKey
}

const localWrapVersion = 1

var localAAD = []byte("tokenizer/local-kek/v1")

// OpenLocal reads the key file at path, creating it (mode 0600) with a fresh random key
// when it does not exist. created reports whether it was created.
func OpenLocal(path string) (p *Local, created bool, err error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw, err = createKeyFile(path)
		created = true
	}
	if err != nil {
		return nil, false, fmt.Errorf("local key file %s: %w", path, err)
	}
	kek, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(kek) != DataKeySize {
		return nil, false, fmt.Errorf("local key file %s: want %d hex-encoded bytes", path, DataKeySize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, false, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, false, err
	}
	// The signing key is derived from the file key, so that the development provider
	// signs audit checkpoints through the same interface as Vault.
	seed, err := hkdf.Key(sha256.New, kek, nil, "tokenizer/local-signing/v1", ed25519.SeedSize)
	if err != nil {
		return nil, false, err
	}
	return &Local{aead: aead, sign: ed25519.NewKeyFromSeed(seed)}, created, nil
}

func createKeyFile(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	kek := make([]byte, DataKeySize)
	if _, err := rand.Read(kek); err != nil {
		return nil, err
	}
	enc := []byte(hex.EncodeToString(kek) + "\n")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return os.ReadFile(path) // another process created it first
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(enc); err != nil {
		f.Close()
		return nil, err
	}
	return enc, f.Close()
}

// Name returns "local".
func (l *Local) Name() string { return "local" }

// NewDataKey returns a random data key wrapped with AES-256-GCM under the file key.
func (l *Local) NewDataKey(context.Context) ([]byte, []byte, error) {
	dk := make([]byte, DataKeySize)
	if _, err := rand.Read(dk); err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, l.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	wrapped := append([]byte{localWrapVersion}, nonce...)
	wrapped = l.aead.Seal(wrapped, nonce, dk, localAAD)
	return dk, wrapped, nil
}

// Unwrap decrypts a key wrapped by NewDataKey.
func (l *Local) Unwrap(_ context.Context, wrapped []byte) ([]byte, error) {
	ns := l.aead.NonceSize()
	if len(wrapped) < 1+ns || wrapped[0] != localWrapVersion {
		return nil, ErrCorrupt
	}
	dk, err := l.aead.Open(nil, wrapped[1:1+ns], wrapped[1+ns:], localAAD)
	if err != nil {
		return nil, ErrCorrupt
	}
	return dk, nil
}

// Rewrap re-encrypts a wrapped key with a fresh nonce (the file key does not rotate).
func (l *Local) Rewrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	dk, err := l.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, l.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{localWrapVersion}, nonce...)
	return l.aead.Seal(out, nonce, dk, localAAD), nil
}

// Sign signs message with the derived ed25519 key; the signature is "local:v1:" and
// base64.
func (l *Local) Sign(_ context.Context, message []byte) (string, error) {
	return localSigPrefix + base64.StdEncoding.EncodeToString(ed25519.Sign(l.sign, message)), nil
}

// Verify checks a signature made by Sign.
func (l *Local) Verify(_ context.Context, message []byte, signature string) (bool, error) {
	raw, ok := strings.CutPrefix(signature, localSigPrefix)
	if !ok {
		return false, nil
	}
	sig, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return false, nil
	}
	return ed25519.Verify(l.sign.Public().(ed25519.PublicKey), message, sig), nil
}

const localSigPrefix = "local:v1:"

// Check always succeeds: the key is in memory.
func (l *Local) Check(context.Context) error { return nil }
