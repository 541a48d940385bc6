package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
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
	return &Local{aead: aead}, created, nil
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

// Check always succeeds: the key is in memory.
func (l *Local) Check(context.Context) error { return nil }
