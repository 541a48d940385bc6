package app

import (
	"context"
	"time"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store/cache"
	"github.com/phivault/tokenizer/internal/tokenizer"
	"github.com/phivault/tokenizer/internal/vault"
)

// SubjectVault returns where the key provider keeps subject keys: a directory beside
// the local key file, or Vault KV. Another provider (a test double) has none.
func (a *App) SubjectVault() (keys.SubjectVault, bool, error) {
	switch p := a.Provider.(type) {
	case *keys.Local:
		v, err := keys.NewLocalSubjects(a.Config.SubjectKeyDir(), p)
		return v, err == nil, err
	case *vault.Provider:
		s := a.Config.Subjects
		mount, prefix := s.VaultKVMount, s.VaultKVPrefix
		if mount == "" {
			mount = "secret"
		}
		if prefix == "" {
			prefix = "tokenizer/subjects"
		}
		return vault.NewSubjects(p, mount, prefix), true, nil
	}
	return nil, false, nil
}

// enableSubjects turns on data subjects in eng when the key provider can hold
// subject keys.
func (a *App) enableSubjects(eng *tokenizer.Engine) error {
	v, ok, err := a.SubjectVault()
	if err != nil || !ok {
		return err
	}
	ttl := a.Config.Subjects.KeyCacheTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	var st tokenizer.SubjectStore = a.Store
	if a.Cache != nil {
		st = cachedSubjects{SubjectStore: a.Store, cache: a.Cache}
	}
	return eng.EnableSubjects(st, v, a.Config.Subjects.Class, ttl)
}

// Receipts returns the erasure receipts recorded under digests (a subject's audit
// digests), each with its inclusion proof (audit.Receipts).
func (a *App) Receipts(ctx context.Context, digests [][]byte) ([]audit.Receipt, error) {
	pk, _ := a.Provider.(audit.PublicKeyer)
	return audit.Receipts(ctx, a.Store, pk, digests)
}

// cachedSubjects erases through the mapping cache, so that this replica forgets the
// subject's rows at once (the others by the store's notification).
type cachedSubjects struct {
	tokenizer.SubjectStore
	cache *cache.Store
}

func (c cachedSubjects) ForgetSubject(ctx context.Context, id int64) (map[string]int64, error) {
	return c.cache.ForgetSubject(ctx, id)
}
