package tokenizer

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"unicode"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/format"
	"github.com/phivault/tokenizer/internal/fpe"
)

// maxWalk bounds FF1 cycle-walking. The sparsest token set (distinguishable dates) is
// about 2.8% of its domain, so a walk longer than this is a broken configuration.
const maxWalk = 10_000

// maxDraws bounds redraws of a random token that the format rejects.
const maxDraws = 10_000

// newRand returns a generator seeded from crypto/rand. ChaCha8 is a cryptographically
// strong stream; one is made per request, so nothing is shared between goroutines.
func newRand() *mrand.Rand {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		panic("crypto/rand failed") // does not happen on supported platforms
	}
	return mrand.New(mrand.NewChaCha8(seed))
}

// layout is where a token may differ from its value: fixed positions are preserved in
// clear, check is a derived check digit (or -1), free are the rest.
type layout struct {
	fixed []bool
	check int
	free  []int
}

// layoutFor returns the (immutable, cached) layout of cores of length n.
func (c *Class) layoutFor(n int) *layout {
	if l, ok := c.layouts.Load(n); ok {
		return l.(*layout)
	}
	l := c.computeLayout(n)
	c.layouts.Store(n, l)
	return l
}

func (c *Class) computeLayout(n int) *layout {
	l := &layout{fixed: make([]bool, n)}
	for i := range n {
		l.fixed[i] = i < c.PreservePrefix || i >= n-c.PreserveSuffix
	}
	l.check = c.format.CheckPosition(n, l.fixed)
	for i := range n {
		if !l.fixed[i] && i != l.check {
			l.free = append(l.free, i)
		}
	}
	return l
}

// randomCore draws a uniformly random token core for p that the format accepts as a
// token, keeping the preserved characters, and that differs from the value.
func randomCore(c *Class, p *format.Parsed, rng *mrand.Rand) ([]rune, error) {
	l := c.layoutFor(len(p.Core))
	sets := p.Template.Sets()
	core := slices.Clone(p.Core)
	narrow, _ := c.format.(format.TokenNarrower)
	for range maxDraws {
		for _, i := range l.free {
			a := sets[i].Alphabet()
			if narrow != nil {
				a = narrow.TokenAlphabet(len(core), i, a)
			}
			core[i] = rune(a[rng.IntN(len(a))])
		}
		if l.check >= 0 {
			c.format.Complete(core, l.check)
		}
		if c.format.ValidToken(p.Template, core) && !slices.Equal(core, p.Core) {
			return core, nil
		}
	}
	return nil, errs.New(errs.Internal, "class %s: no valid random token found", c.Name)
}

// fpeCore is the FF1 token of p: FF1 under the class key, with the class and scope as
// tweak, over the free positions, walking the cycle until the format accepts the
// result as a token. Values are themselves valid tokens of a non-distinguishable
// class, so the walk is a permutation of the valid cores with these preserved
// characters, and no two values share a token.
func (e *Engine) fpeCore(c *Class, p *format.Parsed, scope string) ([]rune, error) {
	return fpeCoreWith(c, p, scope, func(alphabet string) (*fpe.FF1, error) { return e.ff1(c, alphabet) })
}

// fpeCoreWith is fpeCore with the FF1 cipher of an alphabet given by ff1For (a
// subject's own FF1 key, for items of a subject).
func fpeCoreWith(c *Class, p *format.Parsed, scope string, ff1For func(alphabet string) (*fpe.FF1, error)) ([]rune, error) {
	l := c.layoutFor(len(p.Core))
	sets := p.Template.Sets()
	if len(l.free) == 0 {
		return nil, errs.New(errs.InvalidArgument, "class %s: the value has no characters left to tokenize", c.Name)
	}
	alphabet := sets[l.free[0]].FPEAlphabet()
	x := make([]rune, len(l.free))
	for j, i := range l.free {
		if sets[i].FPEAlphabet() != alphabet {
			return nil, errs.New(errs.InvalidArgument, "class %s: the fpe generator needs every tokenized character in one character set", c.Name)
		}
		r := p.Core[i]
		if sets[i] == format.Upper || sets[i] == format.Lower {
			r = unicode.ToUpper(r)
		}
		if r >= 0x80 {
			return nil, errs.New(errs.InvalidArgument, "class %s: characters outside A-Z cannot be tokenized by the fpe generator", c.Name)
		}
		x[j] = r
	}
	ff1, err := ff1For(alphabet)
	if err != nil {
		return nil, err
	}
	if len(x) < ff1.MinLen() {
		return nil, errs.New(errs.InvalidArgument, "class %s: value too short for the fpe generator (FF1 needs at least %d tokenized characters)", c.Name, ff1.MinLen())
	}
	tweak := fpeTweak(c.Name, scope)
	s := string(x)
	core := slices.Clone(p.Core)
	for range maxWalk {
		s, err = ff1.Encrypt(tweak, s)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "fpe failed")
		}
		for j, r := range []rune(s) {
			core[l.free[j]] = r
		}
		if l.check >= 0 {
			c.format.Complete(core, l.check)
		}
		if c.format.ValidToken(p.Template, core) {
			return core, nil
		}
	}
	return nil, errs.New(errs.Internal, "class %s: fpe cycle walk did not end", c.Name)
}

// fpeTweak binds FF1 to the class and scope, length-prefixed so no two pairs collide.
func fpeTweak(class, scope string) []byte {
	t := make([]byte, 0, 8+len(class)+len(scope))
	t = binary.BigEndian.AppendUint32(t, uint32(len(class)))
	t = append(t, class...)
	t = binary.BigEndian.AppendUint32(t, uint32(len(scope)))
	return append(t, scope...)
}

// checkFPEDomain refuses, at configuration load, an fpe class whose tokenizable part
// is under SP 800-38G Rev.1's minimum domain of 1,000,000 for every value it accepts.
func checkFPEDomain(c *Class) error {
	n, alphabet, fixedShape := 0, "", true
	switch f := c.format.(type) {
	case *format.Pattern:
		sets := f.Template().Sets()
		l := c.layoutFor(len(sets))
		for _, i := range l.free {
			a := sets[i].FPEAlphabet()
			if alphabet != "" && a != alphabet {
				return fmt.Errorf("class %s: the fpe generator needs every tokenized position of the pattern in one character set", c.Name)
			}
			alphabet = a
		}
		n = len(l.free)
	default:
		switch c.Format {
		case "ssn":
			n, alphabet = 9, "0123456789"
		case "phone":
			n, alphabet = 10, "0123456789"
		case "date":
			n, alphabet = 8, "0123456789"
		case "npi":
			n, alphabet = 9, "0123456789" // the check digit is derived
		case "credit_card":
			n, alphabet = 12, "0123456789" // the shortest card: 13 digits, one derived
		default:
			fixedShape = false // variable length: checked per value
		}
		if fixedShape {
			n -= c.PreservePrefix + c.PreserveSuffix
		}
	}
	if !fixedShape {
		return nil
	}
	if n <= 0 {
		return fmt.Errorf("class %s: preserve_prefix and preserve_suffix leave nothing to tokenize", c.Name)
	}
	if n < fpe.MinLength(len([]rune(alphabet))) {
		return fmt.Errorf("class %s: the fpe generator needs a domain of at least 1,000,000 (NIST SP 800-38G Rev.1), but %d tokenized characters of radix %d give fewer; preserve fewer characters or use the random generator", c.Name, n, len([]rune(alphabet)))
	}
	return nil
}
