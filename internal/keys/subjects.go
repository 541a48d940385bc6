package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// ErrSubjectKeyGone means a subject key does not exist (never created, or destroyed
// by an erasure). A value encrypted under it can no longer be revealed.
var ErrSubjectKeyGone = errors.New("subject key does not exist (erased)")

// SubjectVault holds one data key per data subject (patient) in the key provider,
// never in the database, so that destroying it there erases the subject's values in
// every copy of the database, backups included (docs/subjects.md).
type SubjectVault interface {
	// NewSubjectKey creates the key of ref and returns its plaintext.
	NewSubjectKey(ctx context.Context, ref string) ([]byte, error)
	// SubjectKey returns the plaintext key of ref, or an error wrapping
	// ErrSubjectKeyGone.
	SubjectKey(ctx context.Context, ref string) ([]byte, error)
	// DestroySubjectKey destroys the key of ref (every version); destroying a key that
	// does not exist succeeds.
	DestroySubjectKey(ctx context.Context, ref string) error
}

var subjectRefPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// NewSubjectRef returns a fresh random subject key reference: 128 bits in hex. It says
// nothing about the subject.
func NewSubjectRef() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed") // does not happen on supported platforms
	}
	return hex.EncodeToString(b)
}

// ValidSubjectRef reports whether ref has the shape NewSubjectRef gives.
func ValidSubjectRef(ref string) bool { return subjectRefPattern.MatchString(ref) }

// LocalSubjects is the development SubjectVault: one file per subject in a directory
// beside the local key file, each holding the subject key wrapped by the local
// provider. Deleting the file erases the subject. Not for PHI, like Local.
type LocalSubjects struct {
	dir string
	p   *Local
}

// NewLocalSubjects returns the vault in dir (created, mode 0700, when missing).
func NewLocalSubjects(dir string, p *Local) (*LocalSubjects, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("subject key directory: %w", err)
	}
	return &LocalSubjects{dir: dir, p: p}, nil
}

func (l *LocalSubjects) path(ref string) (string, error) {
	if !ValidSubjectRef(ref) {
		return "", errors.New("subject key reference: malformed")
	}
	return filepath.Join(l.dir, ref), nil
}

// NewSubjectKey creates the key file of ref.
func (l *LocalSubjects) NewSubjectKey(ctx context.Context, ref string) ([]byte, error) {
	p, err := l.path(ref)
	if err != nil {
		return nil, err
	}
	dk, wrapped, err := l.p.NewDataKey(ctx)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("subject key file: %w", err)
	}
	if _, err := f.Write(wrapped); err != nil {
		f.Close()
		return nil, fmt.Errorf("subject key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("subject key file: %w", err)
	}
	return dk, f.Close()
}

// SubjectKey reads and unwraps the key file of ref.
func (l *LocalSubjects) SubjectKey(ctx context.Context, ref string) ([]byte, error) {
	p, err := l.path(ref)
	if err != nil {
		return nil, err
	}
	wrapped, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrSubjectKeyGone
	}
	if err != nil {
		return nil, fmt.Errorf("subject key file: %w", err)
	}
	return l.p.Unwrap(ctx, wrapped)
}

// DestroySubjectKey deletes the key file of ref.
func (l *LocalSubjects) DestroySubjectKey(_ context.Context, ref string) error {
	p, err := l.path(ref)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("subject key file: %w", err)
	}
	return nil
}

// PublicKey returns the ed25519 public key of the development signing key, so that
// audit receipts verify offline (audit.PublicKeyer).
func (l *Local) PublicKey(context.Context, string) (ed25519.PublicKey, error) {
	return l.sign.Public().(ed25519.PublicKey), nil
}
