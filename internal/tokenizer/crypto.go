package tokenizer

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"sync"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/format"
	"github.com/phivault/tokenizer/internal/fpe"
	"github.com/phivault/tokenizer/internal/keys"
)

// ff1 returns the FF1 cipher of class c for alphabet, under the class's FPE key.
func (e *Engine) ff1(c *Class, alphabet string) (*fpe.FF1, error) {
	id := c.Name + "\x00" + alphabet
	if f, ok := e.ff1s.Load(id); ok {
		return f.(*fpe.FF1), nil
	}
	k, err := e.keys.Current(keys.FPEPurpose(c.Name))
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "data keys not loaded")
	}
	f, err := fpe.NewFF1(k.Material, alphabet)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "fpe key unusable")
	}
	e.ff1s.Store(id, f)
	return f, nil
}

func (e *Engine) aead(k keys.Key) (cipher.AEAD, error) {
	if a, ok := e.aeads.Load(k.Version); ok {
		return a.(cipher.AEAD), nil
	}
	block, err := aes.NewCipher(k.Material)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "data key unusable")
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "data key unusable")
	}
	e.aeads.Store(k.Version, a)
	return a, nil
}

func (e *Engine) aeadVersion(v int) (cipher.AEAD, error) {
	if a, ok := e.aeads.Load(v); ok {
		return a.(cipher.AEAD), nil
	}
	k, err := e.keys.Version(keys.ValueEncryption, v)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "data key version missing")
	}
	return e.aead(k)
}

// lookupKeySize is the length of token digests and value fingerprints: 128 bits of
// HMAC-SHA-256. Collisions among a billion rows have odds near 10^-21, and short keys
// keep the two random-key indexes of the vault small.
const lookupKeySize = 16

// keyedHash is HMAC-SHA-256 over length-prefixed parts, so that no two part lists
// encode alike.
func keyedHash(key []byte, parts ...string) []byte {
	return writeParts(hmac.New(sha256.New, key), nil, parts)
}

// writeParts hashes the length-prefixed parts, assembled in buf, and returns the sum.
func writeParts(m hash.Hash, buf []byte, parts []string) []byte {
	buf = buf[:0]
	for _, p := range parts {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(p)))
		buf = append(buf, p...)
	}
	m.Write(buf)
	return m.Sum(nil)
}

type macState struct {
	h   hash.Hash
	buf []byte
}

// pooledHash is keyedHash with the HMAC state reused per key: an HMAC is three
// SHA-256 states, and the hot path makes several per item.
func (e *Engine) pooledHash(key []byte, parts ...string) []byte {
	id := string(key)
	p, ok := e.macs.Load(id)
	if !ok {
		p, _ = e.macs.LoadOrStore(id, &sync.Pool{New: func() any {
			return &macState{h: hmac.New(sha256.New, key), buf: make([]byte, 0, 256)}
		}})
	}
	pool := p.(*sync.Pool)
	m := pool.Get().(*macState)
	m.h.Reset()
	out := writeParts(m.h, m.buf, parts)
	pool.Put(m)
	return out
}

// digest is the vault's lookup key for a token: a keyed hash of the class and the
// token's normalized form.
func (e *Engine) digest(key []byte, class, normalizedToken string) []byte {
	return e.pooledHash(key, "token", class, normalizedToken)[:lookupKeySize]
}

// fingerprint identifies a normalized value within a class and scope.
func (e *Engine) fingerprint(key []byte, class, scope, normalized string) []byte {
	return e.pooledHash(key, "value", class, scope, normalized)[:lookupKeySize]
}

// auditDigest is the digest of a token recorded in audit events (docs/audit.md). It
// uses its own key so that audit records cannot be joined to vault rows without it.
func (e *Engine) auditDigest(key []byte, class, normalizedToken string) []byte {
	return e.pooledHash(key, "audit", class, normalizedToken)
}

func valueAAD(class string, digest []byte) []byte {
	return append([]byte("tokenizer/v1/value\x00"+class+"\x00"), digest...)
}

func tokenAAD(class string, fp []byte) []byte {
	return append([]byte("tokenizer/v1/token\x00"+class+"\x00"), fp...)
}

func seal(a cipher.AEAD, aad, plaintext []byte) []byte {
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand failed") // crypto/rand.Read does not fail on supported platforms
	}
	return a.Seal(nonce, nonce, plaintext, aad)
}

func open(a cipher.AEAD, aad, ct []byte) ([]byte, error) {
	ns := a.NonceSize()
	if len(ct) < ns {
		return nil, errors.New("ciphertext too short")
	}
	return a.Open(nil, ct[:ns], ct[ns:], aad)
}

// Reencrypt moves up to batch rows to the current value-encryption key version and
// returns how many moved; call it until it returns 0.
func (e *Engine) Reencrypt(ctx context.Context, r Reencrypter, batch int) (int, error) {
	cur, err := e.keys.Current(keys.ValueEncryption)
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "data keys not loaded")
	}
	next, err := e.aead(cur)
	if err != nil {
		return 0, err
	}
	return r.Reencrypt(ctx, cur.Version, batch, func(m *Mapping) error {
		old, err := e.aeadVersion(m.KeyVersion)
		if err != nil {
			return err
		}
		v, err := open(old, valueAAD(m.Class, m.TokenDigest), m.ValueCT)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "stored value does not authenticate")
		}
		m.ValueCT = seal(next, valueAAD(m.Class, m.TokenDigest), v)
		if m.TokenCT != nil {
			t, err := open(old, tokenAAD(m.Class, m.Fingerprint), m.TokenCT)
			if err != nil {
				return errs.Wrap(errs.Internal, err, "stored token does not authenticate")
			}
			m.TokenCT = seal(next, tokenAAD(m.Class, m.Fingerprint), t)
		}
		m.KeyVersion = cur.Version
		return nil
	})
}

// AuditDigests returns the audit digests a token of class may have been recorded
// under (one per audit-digest key version), for the accounting of disclosures.
func (e *Engine) AuditDigests(class, token string) ([][]byte, error) {
	c, p, err := e.parseToken(class, token)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, k := range e.keys.All(keys.AuditDigest) {
		out = append(out, e.auditDigest(k.Material, c.Name, p.Normalized))
	}
	if len(out) == 0 {
		return nil, errs.New(errs.Unavailable, "data keys not loaded")
	}
	return out, nil
}

// Mask returns value as a masked reveal of class shows it: every tokenizable character
// but the last MaskKeepLast becomes *, literals stay (***-**-6789).
func (e *Engine) Mask(class, value string) string {
	c, ok := e.classes[class]
	if !ok {
		return "***"
	}
	p, err := c.format.Parse(value)
	if err != nil {
		return "***"
	}
	core := make([]rune, len(p.Core))
	keep := *c.MaskKeepLast
	for i := range core {
		core[i] = '*'
		if i >= len(core)-keep {
			core[i] = p.Core[i]
		}
	}
	// Render would change the case of letters kept; masked output keeps them as stored.
	var b []rune
	j := 0
	for _, s := range p.Template {
		if s.Set == format.Literal {
			b = append(b, s.Lit)
			continue
		}
		b = append(b, core[j])
		j++
	}
	return string(b)
}
