package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Purpose names what a data key is for. Each purpose has its own keys, so that a key
// is never used by two algorithms.
type Purpose string

// The purposes the engine uses. FPE keys are per class: FPEPurpose(class).
const (
	ValueEncryption Purpose = "value-encryption" // AES-256-GCM of values
	TokenDigest     Purpose = "token-digest"     // HMAC-SHA-256 lookup key of tokens
	Fingerprint     Purpose = "fingerprint"      // HMAC-SHA-256 of normalized values
	AuditDigest     Purpose = "audit-digest"     // HMAC-SHA-256 of tokens in audit events
	AuditMAC        Purpose = "audit-mac"        // HMAC-SHA-256 that authenticates each audit event
)

// FPEPurpose is the purpose of the FF1 key of one class.
func FPEPurpose(class string) Purpose { return Purpose("fpe:" + class) }

// WrappedKey is a data key as stored: only its wrapped form.
type WrappedKey struct {
	Purpose   Purpose
	Version   int
	Provider  string
	Wrapped   []byte
	CreatedAt time.Time
}

// Store persists wrapped data keys.
type Store interface {
	// DataKeys returns every stored key.
	DataKeys(ctx context.Context) ([]WrappedKey, error)
	// InsertDataKey stores k unless its (purpose, version) exists; inserted reports which.
	InsertDataKey(ctx context.Context, k WrappedKey) (inserted bool, err error)
	// ReplaceWrapped swaps the wrapped form of a key for one that wraps the same key.
	ReplaceWrapped(ctx context.Context, p Purpose, version int, old, wrapped []byte) error
}

// ErrOtherProvider is wrapped when a stored data key was wrapped by another provider
// than the configured one.
var ErrOtherProvider = errors.New("data key from another key provider")

// ErrNoKey means a purpose or version has no key.
var ErrNoKey = errors.New("no such data key")

// Key is one unwrapped data key version.
type Key struct {
	Version  int
	Material []byte
}

// Keyring holds unwrapped data keys in memory, by purpose and version.
type Keyring struct {
	provider Provider
	store    Store

	mu   sync.RWMutex
	keys map[Purpose][]Key // ascending by version
}

// NewKeyring returns an empty keyring; call Ensure to load or create keys.
func NewKeyring(p Provider, s Store) *Keyring {
	return &Keyring{provider: p, store: s, keys: map[Purpose][]Key{}}
}

// Ensure loads every stored key and creates version 1 of each purpose that has none.
// Several replicas may run it at once: creation is an insert-if-absent, then a reload.
func (k *Keyring) Ensure(ctx context.Context, purposes ...Purpose) error {
	if err := k.Reload(ctx); err != nil {
		return err
	}
	created := false
	for _, p := range purposes {
		k.mu.RLock()
		have := len(k.keys[p]) > 0
		k.mu.RUnlock()
		if have {
			continue
		}
		if _, err := k.addVersion(ctx, p, 1); err != nil {
			return err
		}
		created = true
	}
	if created {
		return k.Reload(ctx)
	}
	return nil
}

// Reload reads and unwraps every stored key.
func (k *Keyring) Reload(ctx context.Context) error {
	stored, err := k.store.DataKeys(ctx)
	if err != nil {
		return fmt.Errorf("read data keys: %w", err)
	}
	next := map[Purpose][]Key{}
	for _, w := range stored {
		if w.Provider != k.provider.Name() {
			return fmt.Errorf("%w: data key %s v%d is wrapped by provider %q, but the configured provider is %q", ErrOtherProvider, w.Purpose, w.Version, w.Provider, k.provider.Name())
		}
		m, err := k.provider.Unwrap(ctx, w.Wrapped)
		if err != nil {
			return fmt.Errorf("unwrap data key %s v%d: %w", w.Purpose, w.Version, err)
		}
		next[w.Purpose] = append(next[w.Purpose], Key{Version: w.Version, Material: m})
	}
	for p := range next {
		slices.SortFunc(next[p], func(a, b Key) int { return a.Version - b.Version })
	}
	k.mu.Lock()
	k.keys = next
	k.mu.Unlock()
	return nil
}

// Rotate adds a new version of purpose p and makes it current; it returns the version.
func (k *Keyring) Rotate(ctx context.Context, p Purpose) (int, error) {
	if err := k.Reload(ctx); err != nil {
		return 0, err
	}
	cur, _ := k.Current(p)
	v, err := k.addVersion(ctx, p, cur.Version+1)
	if err != nil {
		return 0, err
	}
	return v, k.Reload(ctx)
}

func (k *Keyring) addVersion(ctx context.Context, p Purpose, v int) (int, error) {
	_, wrapped, err := k.provider.NewDataKey(ctx)
	if err != nil {
		return 0, fmt.Errorf("create data key %s v%d: %w", p, v, err)
	}
	if _, err := k.store.InsertDataKey(ctx, WrappedKey{Purpose: p, Version: v, Provider: k.provider.Name(), Wrapped: wrapped}); err != nil {
		return 0, fmt.Errorf("store data key %s v%d: %w", p, v, err)
	}
	return v, nil
}

// Current returns the newest version of purpose p.
func (k *Keyring) Current(p Purpose) (Key, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ks := k.keys[p]
	if len(ks) == 0 {
		return Key{}, fmt.Errorf("%w: %s", ErrNoKey, p)
	}
	return ks[len(ks)-1], nil
}

// Version returns version v of purpose p.
func (k *Keyring) Version(p Purpose, v int) (Key, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, key := range k.keys[p] {
		if key.Version == v {
			return key, nil
		}
	}
	return Key{}, fmt.Errorf("%w: %s v%d", ErrNoKey, p, v)
}

// All returns every version of purpose p, oldest first.
func (k *Keyring) All(p Purpose) []Key {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return slices.Clone(k.keys[p])
}

// RewrapAll re-encrypts every stored data key under the provider's newest KEK version
// (after a KEK rotation in Vault), checking that each still unwraps to the same key.
// It returns how many keys were rewrapped.
func (k *Keyring) RewrapAll(ctx context.Context) (int, error) {
	rw, ok := k.provider.(Rewrapper)
	if !ok {
		return 0, fmt.Errorf("key provider %s cannot rewrap", k.provider.Name())
	}
	stored, err := k.store.DataKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("read data keys: %w", err)
	}
	n := 0
	for _, w := range stored {
		before, err := k.provider.Unwrap(ctx, w.Wrapped)
		if err != nil {
			return n, fmt.Errorf("unwrap data key %s v%d: %w", w.Purpose, w.Version, err)
		}
		out, err := rw.Rewrap(ctx, w.Wrapped)
		if err != nil {
			return n, fmt.Errorf("rewrap data key %s v%d: %w", w.Purpose, w.Version, err)
		}
		after, err := k.provider.Unwrap(ctx, out)
		if err != nil || !bytes.Equal(before, after) {
			return n, fmt.Errorf("rewrapped data key %s v%d does not unwrap to the same key", w.Purpose, w.Version)
		}
		if err := k.store.ReplaceWrapped(ctx, w.Purpose, w.Version, w.Wrapped, out); err != nil {
			return n, fmt.Errorf("store rewrapped key %s v%d: %w", w.Purpose, w.Version, err)
		}
		n++
	}
	return n, k.Reload(ctx)
}

// NewFixedKeyring returns a keyring holding version 1 of each given key, with no
// provider or store behind it: for tests and offline tools.
func NewFixedKeyring(material map[Purpose][]byte) *Keyring {
	k := &Keyring{keys: map[Purpose][]Key{}}
	for p, m := range material {
		k.keys[p] = []Key{{Version: 1, Material: m}}
	}
	return k
}
