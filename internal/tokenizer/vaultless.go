package tokenizer

import (
	"slices"
	"unicode"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/format"
)

// Classes with storage none keep no row: a token is FF1 of its value under the class
// key (scope "": a token does not carry one), and revealing it decrypts it. Any
// well-formed token therefore reveals some value, so a principal allowed to detokenize
// such a class can reveal values that were never tokenized, and nothing can be deleted
// or expire (docs/security.md and the class documentation say so).

// vaultlessToken returns the token of w without touching the store.
func (e *Engine) vaultlessToken(w *pending, ttl bool) error {
	switch {
	case w.scope != "":
		return errs.New(errs.InvalidArgument, "class %s: storage none: scope is not supported (a token must decrypt without it)", w.class.Name)
	case ttl:
		return errs.New(errs.InvalidArgument, "class %s: storage none: tokens cannot expire (no ttl)", w.class.Name)
	}
	core, err := e.fpeCore(w.class, w.parsed, "")
	if err != nil {
		return err
	}
	w.core = core
	return nil
}

// vaultlessNotFound is the answer for a token that is not one of the class's: made
// only when needed, since most reveals succeed.
func vaultlessNotFound(c *Class) error {
	return errs.New(errs.NotFound, "class %s: token not found (it does not decrypt to a value of the class)", c.Name)
}

// vaultlessReveal decrypts a token of a storage-none class: the inverse of fpeCore's
// cycle walk. A token that was not made from a value of the class (or a walk that
// cannot be undone) is NOT_FOUND, never a wrong value: the revealed value must tokenize
// back to the token.
//
// That check needs no second walk. Decryption walked back from the token through
// points that are not valid tokens to the first one that is (x0). fpeCore, started on
// x0's value, encrypts the same points in the opposite order with the same test at
// each, so it ends on the token exactly when x0 parses as a value whose core and
// template are x0's (then the test sees the same characters at every step) and the
// token's own characters, as encryption emits them and completed, are a valid token in
// the token's normalized form. Where the value's core or template differ, the full
// re-encryption decides.
func (e *Engine) vaultlessReveal(c *Class, tp *format.Parsed) (string, error) {
	l := c.layoutFor(len(tp.Core))
	sets := tp.Template.Sets()
	if len(l.free) == 0 {
		return "", vaultlessNotFound(c)
	}
	alphabet := sets[l.free[0]].FPEAlphabet()
	x := make([]rune, len(l.free))
	for j, i := range l.free {
		if sets[i].FPEAlphabet() != alphabet {
			return "", vaultlessNotFound(c)
		}
		x[j] = tp.Core[i]
		if sets[i] == format.Upper || sets[i] == format.Lower {
			x[j] = unicode.ToUpper(x[j])
		}
		if x[j] >= 0x80 {
			return "", vaultlessNotFound(c)
		}
	}
	ff1, err := e.ff1(c, alphabet)
	if err != nil {
		return "", err
	}
	if len(x) < ff1.MinLen() {
		return "", vaultlessNotFound(c)
	}
	tweak := fpeTweak(c.Name, "")
	s := string(x)
	core := slices.Clone(tp.Core)
	walked := false
	for range maxWalk {
		if s, err = ff1.Decrypt(tweak, s); err != nil {
			return "", vaultlessNotFound(c)
		}
		for j, r := range []rune(s) {
			core[l.free[j]] = r
		}
		if l.check >= 0 {
			c.format.Complete(core, l.check)
		}
		if c.format.ValidToken(tp.Template, core) {
			walked = true
			break
		}
	}
	if !walked {
		return "", vaultlessNotFound(c)
	}
	value := tp.Template.Render(core)
	vp, err := c.format.Parse(value)
	if err != nil {
		return "", vaultlessNotFound(c)
	}
	var token []rune
	if slices.Equal(vp.Core, core) && slices.Equal(vp.Template, tp.Template) {
		token = slices.Clone(core)
		for j, i := range l.free {
			token[i] = x[j]
		}
		if l.check >= 0 {
			c.format.Complete(token, l.check)
		}
		if !c.format.ValidToken(vp.Template, token) {
			return "", vaultlessNotFound(c)
		}
	} else if token, err = e.fpeCore(c, vp, ""); err != nil {
		return "", vaultlessNotFound(c)
	}
	if rp, err := c.format.ParseToken(vp.Template.Render(token)); err != nil || rp.Normalized != tp.Normalized {
		return "", vaultlessNotFound(c)
	}
	return value, nil
}
