package tokenizer

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/format"
	"github.com/phivault/tokenizer/internal/keys"
)

// Limits bound a request.
type Limits struct {
	MaxItems      int // items per request
	MaxValueBytes int // bytes per value or token
}

// Engine tokenizes and detokenizes batches. It is safe for concurrent use.
type Engine struct {
	classes map[string]*Class
	store   Store
	keys    *keys.Keyring
	limits  Limits
	now     func() time.Time

	aeads sync.Map // value-encryption key version → cipher.AEAD
	ff1s  sync.Map // class ‖ alphabet → *fpe.FF1
	macs  sync.Map // key material → *sync.Pool of HMAC states

	subj *subjects // nil: subjects are not enabled
}

// maxAttempts bounds the redraws of a random token that collides with an existing one.
// With a token space at most half full, eight collisions in a row happen with
// probability below 0.4%; the class is then reported as exhausted instead of looping.
const maxAttempts = 8

// New returns an engine serving classes.
func New(classes []*Class, st Store, kr *keys.Keyring, limits Limits) (*Engine, error) {
	e := &Engine{classes: map[string]*Class{}, store: st, keys: kr, limits: limits, now: time.Now}
	for _, c := range classes {
		if _, dup := e.classes[c.Name]; dup {
			return nil, fmt.Errorf("class %s is defined twice", c.Name)
		}
		e.classes[c.Name] = c
	}
	return e, nil
}

// KeyPurposes lists the data-key purposes the engine needs for its classes.
func KeyPurposes(classes []*Class) []keys.Purpose {
	ps := []keys.Purpose{keys.ValueEncryption, keys.TokenDigest, keys.Fingerprint, keys.AuditDigest}
	for _, c := range classes {
		if c.Generator == FPE {
			ps = append(ps, keys.FPEPurpose(c.Name))
		}
	}
	return ps
}

// TokenizeItem is one value to tokenize.
type TokenizeItem struct {
	Class, Value, Scope string
	// Subject is the data subject (patient) the value belongs to; "" for none.
	Subject string
}

// TokenizeResult is one item's outcome: Token, or Err (an *errs.Error).
type TokenizeResult struct {
	Token     string
	ExpiresAt *time.Time
	Err       error
	// Created is set when the item made a new static mapping (the value was not in the
	// vault), for the tokenize quota and the enumeration anomaly.
	Created bool
	// SubjectToken is the subject's own token (subjects.class), for items of a subject.
	SubjectToken string
	// SubjectDigest is the audit digest of the item's subject, for items of a subject.
	SubjectDigest []byte
}

// DetokenizeItem is one token to reveal.
type DetokenizeItem struct {
	Class, Token string
	// NeedsGrant is set when policy lets the item through only under a grant.
	NeedsGrant bool
}

// DetokenizeResult is one item's outcome: Value, or Err (an *errs.Error).
type DetokenizeResult struct {
	Value string
	Err   error
	// Digest is the keyed audit digest of the token, set when a value is revealed, so
	// that the audit log can record what was disclosed without recording the token.
	Digest []byte
	// SubjectDigest is the audit digest of the token's subject, when it has one.
	SubjectDigest []byte
	// Grant is the id of the grant the value was revealed under, if any.
	Grant string
}

func (e *Engine) checkBatch(n int) error {
	if n == 0 {
		return errs.New(errs.InvalidArgument, "items: at least one item is required")
	}
	if e.limits.MaxItems > 0 && n > e.limits.MaxItems {
		return errs.New(errs.InvalidArgument, "items: %d items exceed the limit of %d per request", n, e.limits.MaxItems)
	}
	return nil
}

func (e *Engine) class(name string) (*Class, error) {
	if name == "" {
		return nil, errs.New(errs.InvalidArgument, "class: required")
	}
	c, ok := e.classes[name]
	if !ok {
		if ValidClassName(name) {
			return nil, errs.New(errs.InvalidArgument, "class %s: unknown class", name)
		}
		return nil, errs.New(errs.InvalidArgument, "class: unknown class (not a valid class name)")
	}
	return c, nil
}

func (e *Engine) checkText(c *Class, field, s string) error {
	if s == "" {
		return errs.New(errs.InvalidArgument, "class %s: %s: required", c.Name, field)
	}
	if e.limits.MaxValueBytes > 0 && len(s) > e.limits.MaxValueBytes {
		return errs.New(errs.InvalidArgument, "class %s: %s: %d bytes exceed the limit of %d", c.Name, field, len(s), e.limits.MaxValueBytes)
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return errs.New(errs.InvalidArgument, "class %s: %s: not valid UTF-8 text (NUL bytes and invalid UTF-8 are refused)", c.Name, field)
	}
	return nil
}

// checkScope validates a scope: free text stored in PostgreSQL, which refuses NUL bytes
// and invalid UTF-8 (SQLSTATE 22021) and would fail the whole batch; here they fail
// their item.
func checkScope(c *Class, scope string) error {
	if len(scope) > 256 {
		return errs.New(errs.InvalidArgument, "class %s: scope: at most 256 bytes", c.Name)
	}
	if !utf8.ValidString(scope) || strings.IndexByte(scope, 0) >= 0 {
		return errs.New(errs.InvalidArgument, "class %s: scope: not valid UTF-8 text (NUL bytes and invalid UTF-8 are refused)", c.Name)
	}
	return nil
}

// parseValue resolves the class and parses a value of it; errors are per item.
func (e *Engine) parseValue(class, value string) (*Class, *format.Parsed, error) {
	c, err := e.class(class)
	if err == nil {
		err = e.checkText(c, "value", value)
	}
	if err != nil {
		return nil, nil, err
	}
	p, err := c.format.Parse(value)
	if err != nil {
		return nil, nil, formatErr(c, "value", err)
	}
	return c, p, nil
}

// parseToken resolves the class and parses a token of it; errors are per item.
func (e *Engine) parseToken(class, token string) (*Class, *format.Parsed, error) {
	c, err := e.class(class)
	if err == nil {
		err = e.checkText(c, "token", token)
	}
	if err != nil {
		return nil, nil, err
	}
	p, err := c.format.ParseToken(token)
	if err != nil {
		return nil, nil, formatErr(c, "token", err)
	}
	return c, p, nil
}

func formatErr(c *Class, field string, err error) error {
	var fe *format.Error
	if errors.As(err, &fe) {
		return errs.New(errs.InvalidArgument, "class %s: %s %s", c.Name, field, fe.Error())
	}
	return errs.New(errs.InvalidArgument, "class %s: %s does not fit the class format", c.Name, field)
}

// pending is a tokenize item on its way into the vault.
type pending struct {
	idx    int
	class  *Class
	parsed *format.Parsed
	value  string
	scope  string
	fp     []byte
	core   []rune // the token's core once decided
	exp    *time.Time
	err    error
	// created: a new static mapping went in for this item.
	created bool
	subj    *subjectKeys // the item's subject, if any
	sname   string       // the subject identifier, if any
}

// Tokenize tokenizes items. ttl, when positive, overrides the classes' default lifetime.
// Item failures are in the results; a returned error fails the whole request.
func (e *Engine) Tokenize(ctx context.Context, items []TokenizeItem, ttl time.Duration) ([]TokenizeResult, error) {
	if err := e.checkBatch(len(items)); err != nil {
		return nil, err
	}
	if ttl < 0 {
		return nil, errs.New(errs.InvalidArgument, "ttl: must not be negative")
	}
	now := e.now()
	results := make([]TokenizeResult, len(items))
	var work []*pending
	for i, it := range items {
		c, p, err := e.parseValue(it.Class, it.Value)
		if err == nil {
			err = checkScope(c, it.Scope)
		}
		if err != nil {
			results[i].Err = err
			continue
		}
		if c.PreservePrefix+c.PreserveSuffix >= len(p.Core) {
			results[i].Err = errs.New(errs.InvalidArgument, "class %s: value is too short for the class's preserved characters", c.Name)
			continue
		}
		if err := e.checkItemSubject(it.Subject); err != nil {
			results[i].Err = err
			continue
		}
		w := &pending{idx: i, class: c, parsed: p, value: it.Value, scope: it.Scope, sname: it.Subject}
		if !c.stores() {
			if it.Subject != "" {
				results[i].Err = errs.New(errs.InvalidArgument, "class %s: storage none: subjects are not supported (a token must decrypt without its subject's key)", c.Name)
			} else if err := e.vaultlessToken(w, ttl > 0); err != nil {
				results[i].Err = err
			} else {
				results[i].Token = p.Template.Render(w.core)
			}
			continue
		}
		life := c.TTL
		if ttl > 0 {
			life = ttl
		}
		if life > 0 {
			t := now.Add(life).UTC()
			w.exp = &t
		}
		work = append(work, w)
	}
	work, subjectTokens, err := e.attachSubjects(ctx, work, results)
	if err != nil {
		return nil, err
	}
	if len(work) > 0 {
		if err := e.insert(ctx, work); err != nil {
			return nil, err
		}
	}
	for _, w := range work {
		if w.idx < 0 {
			continue // a subject's own token
		}
		r := &results[w.idx]
		if w.sname != "" && w.subj != nil {
			r.SubjectToken, r.SubjectDigest = subjectTokens(w.sname), w.subj.auditDigest
		}
		switch {
		case w.err != nil:
			r.Err = w.err
		case w.core == nil:
			r.Err = errs.New(errs.ResourceExhausted, "class %s: no free token found after %d attempts; the class's token space is nearly full", w.class.Name, maxAttempts)
		default:
			r.Token = w.parsed.Template.Render(w.core)
			r.ExpiresAt = w.exp
			r.Created = w.created
		}
	}
	return results, nil
}

// writeKeys are the current keys a write needs.
type writeKeys struct {
	enc, dig, fp keys.Key
	aead         cipher.AEAD
}

func (e *Engine) writeKeys() (writeKeys, error) {
	var k writeKeys
	var err error
	for _, p := range []struct {
		dst     *keys.Key
		purpose keys.Purpose
	}{{&k.enc, keys.ValueEncryption}, {&k.dig, keys.TokenDigest}, {&k.fp, keys.Fingerprint}} {
		if *p.dst, err = e.keys.Current(p.purpose); err != nil {
			return k, errs.Wrap(errs.Unavailable, err, "data keys not loaded")
		}
	}
	k.aead, err = e.aead(k.enc)
	return k, err
}

// insert stores the mappings of work, redrawing random tokens that collide, and for
// static classes adopting the token of a value stored before (by any replica).
// On return each item has a core, an err, or neither (no free token was found).
func (e *Engine) insert(ctx context.Context, work []*pending) error {
	k, err := e.writeKeys()
	if err != nil {
		return err
	}
	for _, w := range work {
		switch {
		case w.class.Mode == Static && w.subj != nil:
			w.fp = keyedHash(w.subj.fp, "value", w.class.Name, w.scope, w.parsed.Normalized)[:lookupKeySize]
		case w.class.Mode == Static:
			w.fp = e.fingerprint(k.fp.Material, w.class.Name, w.scope, w.parsed.Normalized)
		}
	}
	todo, err := e.peekStatic(work)
	if err != nil {
		return err
	}
	rng := newRand()
	for attempt := 0; attempt < maxAttempts && len(todo) > 0; attempt++ {
		if todo, err = e.insertOnce(ctx, todo, rng, k); err != nil {
			return err
		}
	}
	return nil
}

// peekStatic answers the static items whose values the store holds in memory (the
// cache) with their tokens, before any new mapping is drawn and encrypted for them,
// and returns the other items.
func (e *Engine) peekStatic(work []*pending) ([]*pending, error) {
	p, ok := e.store.(FingerprintPeeker)
	if !ok {
		return work, nil
	}
	var refs []FingerprintRef
	for _, w := range work {
		if w.fp != nil {
			refs = append(refs, FingerprintRef{Class: w.class.Name, Scope: w.scope, Fingerprint: w.fp})
		}
	}
	if len(refs) == 0 {
		return work, nil
	}
	known := p.PeekFingerprints(refs)
	if len(known) == 0 {
		return work, nil
	}
	rest := make([]*pending, 0, len(work)-len(known))
	for _, w := range work {
		if w.fp != nil {
			if m, ok := known[FingerprintRef{Class: w.class.Name, Scope: w.scope, Fingerprint: w.fp}.Key()]; ok {
				if err := e.adopt(w, m); err != nil {
					return nil, err
				}
				continue
			}
		}
		rest = append(rest, w)
	}
	return rest, nil
}

// insertOnce draws a token for every item of todo and writes them; it returns the
// items to draw again (token collisions, races with expired rows).
func (e *Engine) insertOnce(ctx context.Context, todo []*pending, rng *mrand.Rand, k writeKeys) ([]*pending, error) {
	var static, dynamic []*pending
	var staticMs, dynamicMs []Mapping
	for _, w := range todo {
		m, err := e.newMapping(w, rng, k)
		if err != nil {
			if errs.KindOf(err) == errs.InvalidArgument {
				w.err = err
				continue
			}
			return nil, err
		}
		if w.class.Mode == Static {
			static, staticMs = append(static, w), append(staticMs, m)
		} else {
			dynamic, dynamicMs = append(dynamic, w), append(dynamicMs, m)
		}
	}
	lost, err := e.insertStatic(ctx, static, staticMs)
	if err != nil {
		return nil, err
	}
	retry, err := e.insertDynamic(ctx, dynamic, dynamicMs)
	if err != nil {
		return nil, err
	}
	// A static item neither inserted nor found lost a race to a concurrent writer of
	// the same value (adopt its token), collided with another token, or met an expired
	// mapping of the same value still holding the fingerprint (clear it).
	if err := e.adoptExisting(ctx, lost); err != nil {
		return nil, err
	}
	var expired []FingerprintRef
	for _, w := range lost {
		if w.core == nil && w.err == nil {
			expired = append(expired, FingerprintRef{Class: w.class.Name, Scope: w.scope, Fingerprint: w.fp})
			retry = append(retry, w)
		}
	}
	if len(expired) > 0 {
		if _, err := e.store.PurgeExpiredFingerprints(ctx, expired); err != nil {
			return nil, storeErr(ctx, err)
		}
	}
	return retry, nil
}

// insertStatic writes static mappings in one round trip: new values go in, values
// seen before come back with their token. It returns the items neither inserted nor
// found.
func (e *Engine) insertStatic(ctx context.Context, static []*pending, ms []Mapping) ([]*pending, error) {
	if len(static) == 0 {
		return nil, nil
	}
	inserted, existing, err := e.store.InsertStatic(ctx, ms)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	var lost []*pending
	for i, w := range static {
		if inserted[i] {
			w.created = true
			continue
		}
		w.core = nil
		if m, ok := existing[FingerprintRef{Class: w.class.Name, Scope: w.scope, Fingerprint: w.fp}.Key()]; ok {
			if err := e.adopt(w, m); err != nil {
				return nil, err
			}
			continue
		}
		lost = append(lost, w)
	}
	return lost, nil
}

// insertDynamic writes dynamic mappings and returns the items whose token collided.
func (e *Engine) insertDynamic(ctx context.Context, dynamic []*pending, ms []Mapping) ([]*pending, error) {
	if len(dynamic) == 0 {
		return nil, nil
	}
	inserted, err := e.store.InsertMappings(ctx, ms)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	var retry []*pending
	for i, w := range dynamic {
		if !inserted[i] {
			w.core = nil // a token collision: redraw
			retry = append(retry, w)
		}
	}
	return retry, nil
}

// newMapping decides a token for w (FF1 or random) and builds its vault row.
func (e *Engine) newMapping(w *pending, rng *mrand.Rand, k writeKeys) (Mapping, error) {
	var core []rune
	var err error
	switch {
	case w.class.Generator == FPE && w.subj != nil:
		core, err = fpeCoreWith(w.class, w.parsed, w.scope, w.subj.ff1For(w.class))
	case w.class.Generator == FPE:
		core, err = e.fpeCore(w.class, w.parsed, w.scope)
	default:
		core, err = randomCore(w.class, w.parsed, rng)
	}
	if err != nil {
		return Mapping{}, err
	}
	d, err := e.tokenDigest(k.dig, w.class, w.parsed.Template, core)
	if err != nil {
		return Mapping{}, err
	}
	w.core = core
	a, kv := k.aead, k.enc.Version
	var subject int64
	if w.subj != nil {
		a, kv, subject = w.subj.aead, 0, w.subj.id
	}
	m := Mapping{
		Class: w.class.Name, Scope: w.scope, TokenDigest: d, DigestVersion: k.dig.Version,
		ValueCT: seal(a, valueAAD(w.class.Name, d), []byte(w.value)), KeyVersion: kv,
		ExpiresAt: w.exp, Subject: subject,
	}
	if w.class.Mode == Static {
		m.Fingerprint, m.FingerprintVersion = w.fp, k.fp.Version
		m.TokenCT = seal(a, tokenAAD(w.class.Name, w.fp), []byte(string(core)))
	}
	return m, nil
}

// storeErr is the error of a failed store call: the caller's own cancellation or
// deadline as such, anything else wrapped as it is (it wraps errs.ErrUnavailable or
// errs.ErrConflict), for the edge to classify.
func storeErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("token vault: %w", err)
}

// tokenDigest renders core as a token, normalizes it as a presented token would be,
// and returns its lookup digest.
func (e *Engine) tokenDigest(k keys.Key, c *Class, tmpl format.Template, core []rune) ([]byte, error) {
	if n, ok := c.format.(format.CoreNormalizer); ok {
		return e.digest(k.Material, c.Name, n.NormalizeCore(core)), nil
	}
	tp, err := c.format.ParseToken(tmpl.Render(core))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "generated token does not parse")
	}
	return e.digest(k.Material, c.Name, tp.Normalized), nil
}

// adoptExisting sets w.core for every static item whose value already has a live token.
func (e *Engine) adoptExisting(ctx context.Context, ws []*pending) error {
	if len(ws) == 0 {
		return nil
	}
	refs := make([]FingerprintRef, len(ws))
	for i, w := range ws {
		refs[i] = FingerprintRef{Class: w.class.Name, Scope: w.scope, Fingerprint: w.fp}
	}
	found, err := e.store.LookupFingerprints(ctx, refs)
	if err != nil {
		return storeErr(ctx, err)
	}
	for i, w := range ws {
		if m, ok := found[refs[i].Key()]; ok {
			if err := e.adopt(w, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// adopt gives w the token stored in m for the same value.
func (e *Engine) adopt(w *pending, m Mapping) error {
	var a cipher.AEAD
	var err error
	if w.subj != nil {
		a = w.subj.aead
	} else if a, err = e.aeadVersion(m.KeyVersion); err != nil {
		return err
	}
	core, err := open(a, tokenAAD(w.class.Name, w.fp), m.TokenCT)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "stored token does not authenticate")
	}
	rs := []rune(string(core))
	if !w.parsed.Template.Fits(rs) {
		// The same normalized value in a shape the stored token cannot fill: refuse
		// rather than render a token that would not detokenize.
		w.err = errs.New(errs.InvalidArgument, "class %s: value's shape does not fit the token issued for it earlier", w.class.Name)
		w.core = nil
		return nil
	}
	w.core = rs
	w.exp = m.ExpiresAt
	return nil
}

// Detokenize reveals the values of items. The purpose of use is checked by the caller.
// An item that needs a grant is refused (use DetokenizeWith).
func (e *Engine) Detokenize(ctx context.Context, items []DetokenizeItem) ([]DetokenizeResult, error) {
	return e.DetokenizeWith(ctx, items, nil)
}

// detokWant is a parsed detokenize item and, once looked up, its mapping.
type detokWant struct {
	idx     int
	class   *Class
	digests [][]byte
	norm    string
	m       Mapping
	ok      bool
}

// DetokenizeWith is Detokenize where guard decides the items marked NeedsGrant, from
// their tokens' subjects, before anything is decrypted. Such an item is refused by the
// guard whether or not its token exists, so a refusal says nothing of the token.
func (e *Engine) DetokenizeWith(ctx context.Context, items []DetokenizeItem, guard Guard) ([]DetokenizeResult, error) {
	if err := e.checkBatch(len(items)); err != nil {
		return nil, err
	}
	results := make([]DetokenizeResult, len(items))
	digKeys := e.keys.All(keys.TokenDigest)
	auditKey, err := e.keys.Current(keys.AuditDigest)
	if err != nil || len(digKeys) == 0 {
		return nil, errs.New(errs.Unavailable, "data keys not loaded")
	}
	wants := make([]detokWant, 0, len(items))
	refs := make([]Ref, 0, len(items)*len(digKeys))
	for i, it := range items {
		c, p, err := e.parseToken(it.Class, it.Token)
		if err != nil {
			results[i].Err = err
			continue
		}
		if !c.stores() {
			if results[i].Value, results[i].Err = e.vaultlessReveal(c, p); results[i].Err == nil {
				results[i].Digest = e.auditDigest(auditKey.Material, c.Name, p.Normalized)
			}
			continue
		}
		w := detokWant{idx: i, class: c, norm: p.Normalized, digests: make([][]byte, 0, len(digKeys))}
		for _, k := range digKeys {
			d := e.digest(k.Material, c.Name, p.Normalized)
			w.digests = append(w.digests, d)
			refs = append(refs, Ref{Class: c.Name, Digest: d})
		}
		wants = append(wants, w)
	}
	if len(refs) == 0 {
		return results, nil
	}
	found, err := e.store.LookupTokens(ctx, refs)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	sks, err := e.keysByID(ctx, subjectIDs(found))
	if err != nil {
		return nil, err
	}
	for i := range wants {
		wants[i].resolve(found, sks)
	}
	decided, err := applyGuard(ctx, items, wants, guard)
	if err != nil {
		return nil, err
	}
	for _, w := range wants {
		r := &results[w.idx]
		if items[w.idx].NeedsGrant {
			if r.Err, r.Grant = decided[w.idx].Err, decided[w.idx].Grant; r.Err != nil {
				continue
			}
		}
		if !w.ok {
			r.Err = errs.New(errs.NotFound, "class %s: token not found (unknown, deleted or expired)", w.class.Name)
			continue
		}
		if err := e.reveal(r, w, sks, auditKey); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// resolve finds w's live mapping in found; a mapping whose subject was erased (its
// key gone) is not found.
func (w *detokWant) resolve(found map[string]Mapping, sks map[int64]*subjectKeys) {
	for _, d := range w.digests {
		if w.m, w.ok = found[RefKey(w.class.Name, d)]; w.ok {
			break
		}
	}
	if w.ok && w.m.Subject != 0 && sks[w.m.Subject] == nil {
		w.ok = false
	}
}

// reveal decrypts w's value into r.
func (e *Engine) reveal(r *DetokenizeResult, w detokWant, sks map[int64]*subjectKeys, auditKey keys.Key) error {
	var a cipher.AEAD
	var err error
	if w.m.Subject != 0 {
		a, r.SubjectDigest = sks[w.m.Subject].aead, sks[w.m.Subject].auditDigest
	} else if a, err = e.aeadVersion(w.m.KeyVersion); err != nil {
		return err
	}
	v, err := open(a, valueAAD(w.class.Name, w.m.TokenDigest), w.m.ValueCT)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "stored value does not authenticate")
	}
	r.Value = string(v)
	r.Digest = e.auditDigest(auditKey.Material, w.class.Name, w.norm)
	return nil
}

// DeleteItem names a mapping by token, or for static classes by value and scope.
type DeleteItem struct {
	Class, Token, Value, Scope string
}

// DeleteResult is one item's outcome.
type DeleteResult struct {
	Deleted bool
	Err     error
	Digest  []byte // audit digest of the token deleted, when deleted by token
}

// DeleteTokens deletes mappings.
func (e *Engine) DeleteTokens(ctx context.Context, items []DeleteItem) ([]DeleteResult, error) {
	if err := e.checkBatch(len(items)); err != nil {
		return nil, err
	}
	auditKey, err := e.keys.Current(keys.AuditDigest)
	if err != nil || len(e.keys.All(keys.TokenDigest)) == 0 {
		return nil, errs.New(errs.Unavailable, "data keys not loaded")
	}
	results := make([]DeleteResult, len(items))
	var del deletion
	for i, it := range items {
		results[i].Err = e.deleteTarget(&del, i, it, auditKey, &results[i])
	}
	if err := e.resolveValues(ctx, &del); err != nil {
		return nil, err
	}
	if len(del.refs) > 0 {
		deleted, err := e.store.DeleteTokens(ctx, del.refs)
		if err != nil {
			return nil, storeErr(ctx, err)
		}
		claimDeleted(del.targets, deleted, results)
	}
	// An unknown (or already deleted) mapping is not an error: the item's outcome,
	// no such mapping, holds, and a retried request answers the same.
	for i := range results {
		if !results[i].Deleted {
			results[i].Digest = nil
		}
	}
	return results, nil
}

// claimDeleted marks deleted the first item, in request order, that names each
// deleted row: a mapping named twice in one batch (twice by token, or by token and
// by value) is deleted once, and only its first item reports deleted, so that the
// items reporting deleted count the mappings removed.
func claimDeleted(targets []deleteTarget, deleted map[string]bool, results []DeleteResult) {
	slices.SortStableFunc(targets, func(a, b deleteTarget) int { return a.idx - b.idx })
	claimed := map[string]bool{}
	for _, t := range targets {
		for _, d := range t.digests {
			k := RefKey(t.class, d)
			if deleted[k] && !claimed[k] {
				claimed[k] = true
				results[t.idx].Deleted = true
			}
		}
	}
}

// deletion collects what a delete request names: rows by token digest, and static
// values by fingerprint, to resolve to their rows first.
type deletion struct {
	targets []deleteTarget
	refs    []Ref
	byValue []int // item index of each fpRef
	fpRefs  []FingerprintRef
}

type deleteTarget struct {
	idx     int
	class   string
	digests [][]byte
}

// deleteTarget adds item i to del, or returns its item error.
func (e *Engine) deleteTarget(del *deletion, i int, it DeleteItem, auditKey keys.Key, r *DeleteResult) error {
	c, err := e.class(it.Class)
	if err != nil {
		return err
	}
	if !c.stores() {
		return errs.New(errs.FailedPrecondition, "class %s: storage none keeps no mapping, so there is nothing to delete (any token of the class decrypts)", c.Name)
	}
	switch {
	case it.Token != "" && it.Value != "":
		return errs.New(errs.InvalidArgument, "class %s: give token or value, not both", c.Name)
	case it.Token != "":
		_, p, err := e.parseToken(it.Class, it.Token)
		if err != nil {
			return err
		}
		t := deleteTarget{idx: i, class: c.Name}
		for _, k := range e.keys.All(keys.TokenDigest) {
			d := e.digest(k.Material, c.Name, p.Normalized)
			t.digests = append(t.digests, d)
			del.refs = append(del.refs, Ref{Class: c.Name, Digest: d})
		}
		r.Digest = e.auditDigest(auditKey.Material, c.Name, p.Normalized)
		del.targets = append(del.targets, t)
	case it.Value != "":
		if c.Mode != Static {
			return errs.New(errs.InvalidArgument, "class %s: deleting by value needs a static class; give the token", c.Name)
		}
		_, p, err := e.parseValue(it.Class, it.Value)
		if err == nil {
			err = checkScope(c, it.Scope)
		}
		if err != nil {
			return err
		}
		for _, k := range e.keys.All(keys.Fingerprint) {
			del.fpRefs = append(del.fpRefs, FingerprintRef{Class: c.Name, Scope: it.Scope, Fingerprint: e.fingerprint(k.Material, c.Name, it.Scope, p.Normalized)})
			del.byValue = append(del.byValue, i)
		}
	default:
		return errs.New(errs.InvalidArgument, "class %s: token or value is required", c.Name)
	}
	return nil
}

// resolveValues turns the static values named in del into the rows that hold them.
func (e *Engine) resolveValues(ctx context.Context, del *deletion) error {
	if len(del.fpRefs) == 0 {
		return nil
	}
	found, err := e.store.LookupFingerprints(ctx, del.fpRefs)
	if err != nil {
		return storeErr(ctx, err)
	}
	for j, r := range del.fpRefs {
		if m, ok := found[r.Key()]; ok {
			del.targets = append(del.targets, deleteTarget{idx: del.byValue[j], class: m.Class, digests: [][]byte{m.TokenDigest}})
			del.refs = append(del.refs, Ref{Class: m.Class, Digest: m.TokenDigest})
		}
	}
	return nil
}
