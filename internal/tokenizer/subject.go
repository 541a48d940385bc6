package tokenizer

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/fpe"
	"github.com/phivault/tokenizer/internal/keys"
)

// MaxSubjectBytes bounds a subject identifier.
const MaxSubjectBytes = 256

// Subject is a data subject (a patient) as the vault knows it: a keyed digest of the
// caller's identifier, never the identifier, and the reference of its key in the key
// provider (keys.SubjectVault).
type Subject struct {
	ID            int64
	Digest        []byte // lookup digest (token-digest key, domain "subject")
	DigestVersion int
	AuditDigest   []byte // the digest audit events and receipts carry
	KeyRef        string
	CreatedAt     time.Time
}

// SubjectStore is what subjects need of the token vault.
type SubjectStore interface {
	// SubjectsByDigest returns the subjects among digests, keyed by string(digest).
	SubjectsByDigest(ctx context.Context, digests [][]byte) (map[string]Subject, error)
	// SubjectsByID returns the subjects among ids.
	SubjectsByID(ctx context.Context, ids []int64) (map[int64]Subject, error)
	// InsertSubject inserts s unless its digest exists, and returns the stored subject
	// (s with its ID, or the one already there) and whether s went in.
	InsertSubject(ctx context.Context, s Subject) (Subject, bool, error)
	// ForgetSubject deletes subject id and every mapping of it in one transaction, and
	// returns how many mappings of each class went. An unknown id deletes nothing.
	ForgetSubject(ctx context.Context, id int64) (map[string]int64, error)
}

// subjectKeys are the keys of one subject, derived from its key in the key provider.
type subjectKeys struct {
	id          int64
	auditDigest []byte
	master      []byte
	aead        cipher.AEAD
	fp          []byte
	loaded      time.Time
}

// subjects is the engine's subject support (EnableSubjects).
type subjects struct {
	store    SubjectStore
	vault    keys.SubjectVault
	class    string // class of the subject's own token ("" none)
	cacheTTL time.Duration

	mu    sync.Mutex
	cache map[string]*subjectKeys // by key reference
}

// EnableSubjects lets tokenize items carry a subject: st holds subjects, v their keys,
// class (optional) is the class of each subject's own token, and cacheTTL bounds how
// long a replica keeps an unwrapped subject key in memory. Call it before serving.
func (e *Engine) EnableSubjects(st SubjectStore, v keys.SubjectVault, class string, cacheTTL time.Duration) error {
	if class != "" {
		if _, ok := e.classes[class]; !ok {
			return errors.New("subjects.class: " + class + " is not a configured class")
		}
	}
	e.subj = &subjects{store: st, vault: v, class: class, cacheTTL: cacheTTL, cache: map[string]*subjectKeys{}}
	return nil
}

// SubjectsEnabled reports whether EnableSubjects was called.
func (e *Engine) SubjectsEnabled() bool { return e.subj != nil }

// SubjectBound reports whether tokens of class are bound to their subject when one is
// given: subjects are enabled and the class stores its mappings (a storage-none token
// must decrypt without a subject key).
func (e *Engine) SubjectBound(class string) bool {
	c, ok := e.classes[class]
	return e.subj != nil && ok && c.stores()
}

// checkSubject validates a subject identifier; errors name the field, not the value.
func checkSubject(s string) error {
	switch {
	case len(s) > MaxSubjectBytes:
		return errs.New(errs.InvalidArgument, "subject: at most %d bytes", MaxSubjectBytes)
	case !utf8.ValidString(s):
		return errs.New(errs.InvalidArgument, "subject: not valid UTF-8")
	case strings.TrimSpace(s) != s || s == "":
		return errs.New(errs.InvalidArgument, "subject: empty or with leading or trailing white space")
	case strings.ContainsFunc(s, unicode.IsControl):
		return errs.New(errs.InvalidArgument, "subject: control characters are not allowed")
	}
	return nil
}

// subjectDigests returns the lookup digests of subject under every token-digest key
// version, the current one first.
func (e *Engine) subjectDigests(subject string) ([][]byte, int, error) {
	all := e.keys.All(keys.TokenDigest)
	if len(all) == 0 {
		return nil, 0, errs.New(errs.Unavailable, "data keys not loaded")
	}
	out := make([][]byte, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		out = append(out, e.pooledHash(all[i].Material, "subject", subject)[:lookupKeySize])
	}
	return out, all[len(all)-1].Version, nil
}

// SubjectAuditDigests returns the digests audit events may carry for subject, one per
// audit-digest key version, for the accounting of disclosures and erasure receipts.
func (e *Engine) SubjectAuditDigests(subject string) ([][]byte, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	var out [][]byte
	for _, k := range e.keys.All(keys.AuditDigest) {
		out = append(out, e.pooledHash(k.Material, "audit-subject", subject))
	}
	if len(out) == 0 {
		return nil, errs.New(errs.Unavailable, "data keys not loaded")
	}
	return out, nil
}

// findSubject returns the stored subject of name, if any.
func (e *Engine) findSubject(ctx context.Context, name string) (Subject, bool, error) {
	digests, _, err := e.subjectDigests(name)
	if err != nil {
		return Subject{}, false, err
	}
	found, err := e.subj.store.SubjectsByDigest(ctx, digests)
	if err != nil {
		return Subject{}, false, storeErr(ctx, err)
	}
	for _, d := range digests {
		if s, ok := found[string(d)]; ok {
			return s, true, nil
		}
	}
	return Subject{}, false, nil
}

// resolveSubject returns the keys of subject name, creating the subject when it is
// new. A stored subject whose key is gone from the key provider (a restored backup, or
// an erasure in progress elsewhere) is finished off and created afresh.
func (e *Engine) resolveSubject(ctx context.Context, name string) (*subjectKeys, error) {
	for range 3 {
		s, ok, err := e.findSubject(ctx, name)
		if err != nil {
			return nil, err
		}
		if !ok {
			s, err = e.createSubject(ctx, name)
			if errors.Is(err, errs.ErrConflict) && ctx.Err() == nil {
				// A concurrent first use committed the subject after our statement's
				// snapshot (or an erasure removed it): read it again.
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		sk, err := e.subjectKeys(ctx, s)
		if errors.Is(err, keys.ErrSubjectKeyGone) {
			if _, err := e.subj.store.ForgetSubject(ctx, s.ID); err != nil {
				return nil, storeErr(ctx, err)
			}
			continue
		}
		return sk, err
	}
	return nil, errs.New(errs.Aborted, "subject: concurrent creation or erasure; retry")
}

// createSubject creates a key in the key provider, then the subject row; a concurrent
// creator of the same subject wins and our key is destroyed.
func (e *Engine) createSubject(ctx context.Context, name string) (Subject, error) {
	digests, dv, err := e.subjectDigests(name)
	if err != nil {
		return Subject{}, err
	}
	ak, err := e.keys.Current(keys.AuditDigest)
	if err != nil {
		return Subject{}, errs.Wrap(errs.Unavailable, err, "data keys not loaded")
	}
	ref := keys.NewSubjectRef()
	master, err := e.subj.vault.NewSubjectKey(ctx, ref)
	if err != nil {
		return Subject{}, errs.Wrap(errs.Unavailable, err, "subject key: key provider")
	}
	s := Subject{Digest: digests[0], DigestVersion: dv, AuditDigest: e.pooledHash(ak.Material, "audit-subject", name), KeyRef: ref}
	stored, inserted, err := e.subj.store.InsertSubject(ctx, s)
	if err != nil || !inserted {
		_ = e.subj.vault.DestroySubjectKey(context.WithoutCancel(ctx), ref)
	}
	if err != nil {
		return Subject{}, storeErr(ctx, err)
	}
	if inserted {
		e.subj.put(ref, deriveSubjectKeys(stored, master))
	}
	return stored, nil
}

// subjectKeys returns the keys of s, from the cache or the key provider.
func (e *Engine) subjectKeys(ctx context.Context, s Subject) (*subjectKeys, error) {
	if sk := e.subj.get(s.KeyRef); sk != nil && sk.id == s.ID {
		return sk, nil
	}
	master, err := e.subj.vault.SubjectKey(ctx, s.KeyRef)
	if errors.Is(err, keys.ErrSubjectKeyGone) {
		return nil, err
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "subject key: key provider")
	}
	sk := deriveSubjectKeys(s, master)
	e.subj.put(s.KeyRef, sk)
	return sk, nil
}

// deriveSubjectKeys derives the value key and the fingerprint key of a subject from
// its key (HKDF-SHA-256, one label per use).
func deriveSubjectKeys(s Subject, master []byte) *subjectKeys {
	vk, err1 := hkdf.Key(sha256.New, master, nil, "tokenizer/subject/value/v1", 32)
	fk, err2 := hkdf.Key(sha256.New, master, nil, "tokenizer/subject/fingerprint/v1", 32)
	block, err3 := aes.NewCipher(vk)
	if err := errors.Join(err1, err2, err3); err != nil {
		panic("subject key derivation: " + err.Error()) // fixed sizes: cannot fail
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		panic("subject key derivation: " + err.Error())
	}
	return &subjectKeys{id: s.ID, auditDigest: s.AuditDigest, master: master, aead: a, fp: fk, loaded: time.Now()}
}

// ff1For returns the subject's FF1 cipher for class c and alphabet: FF1 under a key
// derived from the subject key, so that its tokens die with the subject too.
func (sk *subjectKeys) ff1For(c *Class) func(string) (*fpe.FF1, error) {
	return func(alphabet string) (*fpe.FF1, error) {
		k, err := hkdf.Key(sha256.New, sk.master, nil, "tokenizer/subject/fpe/v1\x00"+c.Name, 32)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "subject fpe key")
		}
		f, err := fpe.NewFF1(k, alphabet)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "subject fpe key unusable")
		}
		return f, nil
	}
}

func (s *subjects) get(ref string) *subjectKeys {
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.cache[ref]
	if sk != nil && time.Since(sk.loaded) > s.cacheTTL {
		delete(s.cache, ref)
		return nil
	}
	return sk
}

// subjectCacheMax bounds the unwrapped subject keys a replica holds.
const subjectCacheMax = 4096

// put caches sk. A full cache first loses its expired keys and then, if still full,
// keys at random (map order) down to nine tenths: the scan runs once per hundreds of
// puts, not on every one (it did, and the cache outgrew its bound, when every key was
// younger than the TTL: a batch of new patients then cost a scan of the cache each).
func (s *subjects) put(ref string, sk *subjectKeys) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= subjectCacheMax {
		for r, v := range s.cache {
			if time.Since(v.loaded) > s.cacheTTL {
				delete(s.cache, r)
			}
		}
		for r := range s.cache {
			if len(s.cache) < subjectCacheMax*9/10 {
				break
			}
			delete(s.cache, r)
		}
	}
	s.cache[ref] = sk
}

func (s *subjects) drop(ref string) {
	s.mu.Lock()
	delete(s.cache, ref)
	s.mu.Unlock()
}

// keysByID returns the keys of the subjects ids; a subject erased (row or key gone)
// is absent from the map.
func (e *Engine) keysByID(ctx context.Context, ids []int64) (map[int64]*subjectKeys, error) {
	out := map[int64]*subjectKeys{}
	if len(ids) == 0 {
		return out, nil
	}
	if e.subj == nil {
		return out, nil // subject rows but subjects switched off: nothing revealable
	}
	found, err := e.subj.store.SubjectsByID(ctx, ids)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	for id, s := range found {
		sk, err := e.subjectKeys(ctx, s)
		if errors.Is(err, keys.ErrSubjectKeyGone) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = sk
	}
	return out, nil
}

// Erasure is what ForgetSubject destroyed: for the erasure receipt.
type Erasure struct {
	// AuditDigest is the subject's digest as audit events carry it.
	AuditDigest []byte
	// Counts is the number of mappings deleted per class.
	Counts map[string]int64
}

// ForgetSubject erases subject: it destroys the subject's key in the key provider
// first (from then on no copy of the database can reveal the subject's values), then
// deletes the subject and its mappings in one transaction. An unknown subject is
// NOT_FOUND. Re-running after a failure in between completes the erasure.
func (e *Engine) ForgetSubject(ctx context.Context, subject string) (Erasure, error) {
	if e.subj == nil {
		return Erasure{}, errs.New(errs.FailedPrecondition, "subject: subjects are not enabled")
	}
	if err := checkSubject(subject); err != nil {
		return Erasure{}, err
	}
	s, ok, err := e.findSubject(ctx, subject)
	if err != nil {
		return Erasure{}, err
	}
	if !ok {
		return Erasure{}, errs.New(errs.NotFound, "subject: unknown subject (never tokenized, or already erased)")
	}
	if err := e.subj.vault.DestroySubjectKey(ctx, s.KeyRef); err != nil {
		return Erasure{}, errs.Wrap(errs.Unavailable, err, "subject key: key provider")
	}
	e.subj.drop(s.KeyRef)
	counts, err := e.subj.store.ForgetSubject(ctx, s.ID)
	if err != nil {
		return Erasure{}, storeErr(ctx, err)
	}
	return Erasure{AuditDigest: s.AuditDigest, Counts: counts}, nil
}

// checkItemSubject validates an item's subject, when it has one.
func (e *Engine) checkItemSubject(subject string) error {
	if subject == "" {
		return nil
	}
	if e.subj == nil {
		return errs.New(errs.InvalidArgument, "subject: subjects are not enabled on this service")
	}
	return checkSubject(subject)
}

// attachSubjects resolves the subjects of work (creating new ones) and, when a subject
// class is configured, adds one pending item per subject for its own token. It returns
// the work and a function giving each subject's own token once inserted. An item whose
// subject does not fit the subject class fails alone.
func (e *Engine) attachSubjects(ctx context.Context, work []*pending, results []TokenizeResult) ([]*pending, func(string) string, error) {
	own := map[string]*pending{}
	tokenOf := func(name string) string {
		if w := own[name]; w != nil && w.err == nil && w.core != nil {
			return w.parsed.Template.Render(w.core)
		}
		return ""
	}
	if e.subj == nil {
		return work, tokenOf, nil
	}
	var names []string
	for _, w := range work {
		if w.sname != "" && !slices.Contains(names, w.sname) {
			names = append(names, w.sname)
		}
	}
	resolved, err := e.resolveSubjects(ctx, names)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range names {
		if err := e.addSubjectToken(own, name, resolved[name]); err != nil {
			own[name] = &pending{err: err}
		}
	}
	out := work[:0:0]
	for _, w := range work {
		if w.sname == "" {
			out = append(out, w)
			continue
		}
		sk := resolved[w.sname]
		if p := own[w.sname]; p != nil && p.err != nil && p.class == nil {
			results[w.idx].Err = p.err
			continue
		}
		w.subj = sk
		out = append(out, w)
	}
	for _, p := range own {
		if p.class != nil {
			out = append(out, p)
		}
	}
	return out, tokenOf, nil
}

// addSubjectToken adds the pending item of the subject's own token to own.
func (e *Engine) addSubjectToken(own map[string]*pending, name string, sk *subjectKeys) error {
	if e.subj.class == "" {
		return nil
	}
	c, p, err := e.parseValue(e.subj.class, name)
	if err != nil || c.PreservePrefix+c.PreserveSuffix >= len(p.Core) {
		return errs.New(errs.InvalidArgument, "subject: does not fit the format of the subject class %s", e.subj.class)
	}
	own[name] = &pending{idx: -1, class: c, parsed: p, value: name, subj: sk, sname: name}
	return nil
}

// subjectIDs lists the distinct subjects of found.
func subjectIDs(found map[string]Mapping) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, m := range found {
		if m.Subject != 0 && !seen[m.Subject] {
			seen[m.Subject] = true
			out = append(out, m.Subject)
		}
	}
	return out
}

// GuardItem is an item that needs a grant: its class and its token's subject (0 when
// the token has none, or does not exist).
type GuardItem struct {
	Class   string
	Subject int64
}

// GuardResult is the guard's decision on one item: the grant that covers it, or Err
// (PERMISSION_DENIED with the reason).
type GuardResult struct {
	Grant string
	Err   error
}

// Guard decides items that need a grant; it returns one result per item.
type Guard func(ctx context.Context, items []GuardItem) ([]GuardResult, error)

// applyGuard asks guard about the items marked NeedsGrant and returns its decisions by
// item index. Without a guard every such item is refused.
func applyGuard(ctx context.Context, items []DetokenizeItem, wants []detokWant, guard Guard) (map[int]GuardResult, error) {
	var asked []GuardItem
	var idx []int
	for _, w := range wants {
		if !items[w.idx].NeedsGrant {
			continue
		}
		gi := GuardItem{Class: w.class.Name}
		if w.ok {
			gi.Subject = w.m.Subject
		}
		asked, idx = append(asked, gi), append(idx, w.idx)
	}
	out := map[int]GuardResult{}
	if len(asked) == 0 {
		return out, nil
	}
	if guard == nil {
		for k, i := range idx {
			out[i] = GuardResult{Err: errs.New(errs.PermissionDenied, "class %s: revealable only under a grant", asked[k].Class)}
		}
		return out, nil
	}
	res, err := guard(ctx, asked)
	if err != nil {
		return nil, err
	}
	if len(res) != len(asked) {
		return nil, errs.New(errs.Internal, "grant guard answered %d of %d items", len(res), len(asked))
	}
	for k, i := range idx {
		out[i] = res[k]
	}
	return out, nil
}

// SubjectInfo returns the stored subject of an identifier: its ID and audit digest; an
// unknown (or erased) subject is NOT_FOUND.
func (e *Engine) SubjectInfo(ctx context.Context, subject string) (Subject, error) {
	if e.subj == nil {
		return Subject{}, errs.New(errs.FailedPrecondition, "subject: subjects are not enabled")
	}
	if err := checkSubject(subject); err != nil {
		return Subject{}, err
	}
	s, ok, err := e.findSubject(ctx, subject)
	if err != nil {
		return Subject{}, err
	}
	if !ok {
		return Subject{}, errs.New(errs.NotFound, "subject: unknown subject (never tokenized, or erased)")
	}
	return s, nil
}

// subjectWorkers bounds the subjects of one request resolved at once: each new subject
// costs key-provider round trips (Vault: datakey, decrypt, KV write).
const subjectWorkers = 8

// resolveSubjects returns the keys of every subject in names, creating new ones: the
// known ones found with one query, the rest (and keys not cached) resolved in parallel.
func (e *Engine) resolveSubjects(ctx context.Context, names []string) (map[string]*subjectKeys, error) {
	out := make(map[string]*subjectKeys, len(names))
	if len(names) == 0 {
		return out, nil
	}
	var all [][]byte
	for _, n := range names {
		ds, _, err := e.subjectDigests(n)
		if err != nil {
			return nil, err
		}
		all = append(all, ds...)
	}
	known, err := e.subj.store.SubjectsByDigest(ctx, all)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	var todo []string
	unknown := map[string]bool{}
	for _, n := range names {
		ds, _, _ := e.subjectDigests(n)
		if sk := e.cachedSubject(known, ds); sk != nil {
			out[n] = sk
			continue
		}
		todo = append(todo, n)
		unknown[n] = !storedAny(known, ds)
	}
	got := make([]*subjectKeys, len(todo))
	fails := make([]error, len(todo))
	sem := make(chan struct{}, subjectWorkers)
	var wg sync.WaitGroup
	for i, n := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if unknown[n] {
				// Not stored a moment ago: create it without looking it up again (a
				// concurrent creator's subject comes back from the insert).
				if s, err := e.createSubject(ctx, n); err == nil {
					if got[i], fails[i] = e.subjectKeys(ctx, s); !errors.Is(fails[i], keys.ErrSubjectKeyGone) {
						return
					}
				} else if !errors.Is(err, errs.ErrConflict) {
					fails[i] = err
					return
				}
			}
			got[i], fails[i] = e.resolveSubject(ctx, n)
		}()
	}
	wg.Wait()
	for i, n := range todo {
		if fails[i] != nil {
			return nil, fails[i]
		}
		out[n] = got[i]
	}
	return out, nil
}

// storedAny reports whether a subject with one of digests is among known.
func storedAny(known map[string]Subject, digests [][]byte) bool {
	for _, d := range digests {
		if _, ok := known[string(d)]; ok {
			return true
		}
	}
	return false
}

// cachedSubject returns the cached keys of the stored subject among known that has one
// of digests, or nil.
func (e *Engine) cachedSubject(known map[string]Subject, digests [][]byte) *subjectKeys {
	for _, d := range digests {
		if s, ok := known[string(d)]; ok {
			if sk := e.subj.get(s.KeyRef); sk != nil && sk.id == s.ID {
				return sk
			}
			return nil
		}
	}
	return nil
}
