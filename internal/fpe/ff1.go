package fpe

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/big"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

const (
	// MaxTweakLen is the longest tweak accepted, in bytes.
	MaxTweakLen = 1024
	// MaxLen is the longest input accepted, in symbols. Identifiers are far shorter;
	// the bound keeps the work per call predictable.
	MaxLen = 4096
	// MinDomain is the smallest permitted domain size.
	// SP 800-38G Rev.1 §5.2: radix^minlen ≥ 1,000,000.
	MinDomain = 1_000_000

	maxRadix = 1 << 16
	rounds   = 10
	// stackNumerals is how many symbols the string API converts without allocating.
	stackNumerals = 128
)

// FF1 is an FF1 cipher bound to one AES key and one alphabet. It is safe for
// concurrent use: all per-call state lives on the stack or in pooled scratch.
type FF1 struct {
	block    cipher.Block
	radix    uint32
	alphabet []rune
	ascii    [128]int32 // symbol index for ASCII runes, -1 when absent
	index    map[rune]uint16
	isASCII  bool
	minLen   int
	// fastMaxLen is the largest n for which radix^ceil(n/2) < 2^64, so both halves
	// fit in a uint64 and the uint64 path applies.
	fastMaxLen int
	pool       sync.Pool
	// headers caches CIPH(P) by input length: P depends only on radix, length and tweak
	// length, which are fixed for a token class, so this saves one AES block per call.
	headers [maxCachedLen + 1]atomic.Pointer[headerState]
}

const maxCachedLen = 64

type headerState struct {
	tweakLen int
	state    [16]byte
}

// scratch holds the buffers handed to cipher.Block: passing stack arrays through the
// interface would make them escape, one allocation each per call.
type scratch struct {
	q                 [MaxTweakLen + 32]byte
	p, state, last, r [16]byte
}

// NewFF1 returns an FF1 cipher for an AES-128, AES-192 or AES-256 key and an alphabet
// of 2 to 65,536 distinct symbols; the radix is the number of symbols.
func NewFF1(key []byte, alphabet string) (*FF1, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, KeySizeError(len(key))
	}
	if !utf8.ValidString(alphabet) {
		return nil, &AlphabetError{Reason: "alphabet is not valid UTF-8"}
	}
	runes := []rune(alphabet)
	if len(runes) < 2 {
		return nil, &AlphabetError{Reason: "alphabet needs at least 2 symbols"}
	}
	if len(runes) > maxRadix {
		return nil, &AlphabetError{Reason: "alphabet has more than 65536 symbols"}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, KeySizeError(len(key))
	}
	c := &FF1{block: block, radix: uint32(len(runes)), alphabet: runes, isASCII: true}
	for i := range c.ascii {
		c.ascii[i] = -1
	}
	seen := make(map[rune]struct{}, len(runes))
	for i, r := range runes {
		if _, dup := seen[r]; dup {
			return nil, &AlphabetError{Reason: "alphabet repeats a symbol", Position: i}
		}
		seen[r] = struct{}{}
		if r < utf8.RuneSelf {
			c.ascii[r] = int32(i)
		} else {
			c.isASCII = false
		}
	}
	if !c.isASCII {
		c.index = make(map[rune]uint16, len(runes))
		for i, r := range runes {
			c.index[r] = uint16(i)
		}
	}
	c.minLen = MinLength(len(runes))
	c.fastMaxLen = fastMaxLen(uint64(c.radix))
	c.pool.New = func() any { return new(scratch) }
	return c, nil
}

// MinLength is the shortest input length whose domain meets MinDomain for a radix.
func MinLength(radix int) int {
	n, d := 0, uint64(1)
	for d < MinDomain {
		d *= uint64(radix)
		n++
	}
	return n
}

func fastMaxLen(radix uint64) int {
	// The largest v with radix^v < 2^64; then n = 2v is the largest even length
	// whose larger half v still fits.
	v, p := 0, uint64(1)
	for {
		hi, lo := bits.Mul64(p, radix)
		if hi != 0 {
			break
		}
		p = lo
		v++
	}
	return 2 * v
}

// Radix is the number of symbols in the alphabet.
func (c *FF1) Radix() int { return int(c.radix) }

// MinLen is the shortest input accepted for this alphabet.
func (c *FF1) MinLen() int { return c.minLen }

// Encrypt enciphers plaintext, a string of alphabet symbols, under tweak.
func (c *FF1) Encrypt(tweak []byte, plaintext string) (string, error) {
	return c.transformString(tweak, plaintext, true)
}

// Decrypt deciphers ciphertext, a string of alphabet symbols, under tweak.
func (c *FF1) Decrypt(tweak []byte, ciphertext string) (string, error) {
	return c.transformString(tweak, ciphertext, false)
}

// AppendEncrypt enciphers plaintext and appends the ciphertext's UTF-8 to dst. With a
// dst of sufficient capacity it does not allocate.
func (c *FF1) AppendEncrypt(dst, tweak []byte, plaintext string) ([]byte, error) {
	return c.transformAppend(dst, tweak, plaintext, true)
}

// AppendDecrypt deciphers ciphertext and appends the plaintext's UTF-8 to dst.
func (c *FF1) AppendDecrypt(dst, tweak []byte, ciphertext string) ([]byte, error) {
	return c.transformAppend(dst, tweak, ciphertext, false)
}

func (c *FF1) transformAppend(dst, tweak []byte, in string, encrypt bool) ([]byte, error) {
	var stack [stackNumerals]uint16
	nums, err := c.numerals(stack[:], in)
	if err != nil {
		return dst, err
	}
	if encrypt {
		err = c.EncryptNumerals(tweak, nums, nums)
	} else {
		err = c.DecryptNumerals(tweak, nums, nums)
	}
	if err != nil {
		return dst, err
	}
	for _, x := range nums {
		dst = utf8.AppendRune(dst, c.alphabet[x])
	}
	return dst, nil
}

// numerals converts s into numerals, in stack when it fits.
func (c *FF1) numerals(stack []uint16, s string) ([]uint16, error) {
	var nums []uint16
	n := utf8.RuneCountInString(s)
	switch {
	case n <= len(stack):
		nums = stack[:n]
	case n <= MaxLen:
		nums = make([]uint16, n)
	default:
		return nil, &LengthError{Length: n, Min: c.minLen, Max: MaxLen}
	}
	if err := c.toNumerals(s, nums); err != nil {
		return nil, err
	}
	return nums, nil
}

func (c *FF1) transformString(tweak []byte, in string, encrypt bool) (string, error) {
	var stack [stackNumerals]uint16
	nums, err := c.numerals(stack[:], in)
	if err != nil {
		return "", err
	}
	if encrypt {
		err = c.EncryptNumerals(tweak, nums, nums)
	} else {
		err = c.DecryptNumerals(tweak, nums, nums)
	}
	if err != nil {
		return "", err
	}
	return c.fromNumerals(nums), nil
}

func (c *FF1) toNumerals(s string, dst []uint16) error {
	if c.isASCII {
		for i := 0; i < len(s); i++ {
			b := s[i]
			if b >= utf8.RuneSelf || c.ascii[b] < 0 {
				return &SymbolError{Position: utf8.RuneCountInString(s[:i])}
			}
			dst[i] = uint16(c.ascii[b])
		}
		return nil
	}
	pos := 0
	for _, r := range s {
		var idx int32 = -1
		if r < utf8.RuneSelf {
			idx = c.ascii[r]
		} else if v, ok := c.index[r]; ok {
			idx = int32(v)
		}
		if idx < 0 {
			return &SymbolError{Position: pos}
		}
		dst[pos] = uint16(idx)
		pos++
	}
	return nil
}

func (c *FF1) fromNumerals(nums []uint16) string {
	var sb strings.Builder
	if c.isASCII {
		sb.Grow(len(nums))
		for _, x := range nums {
			sb.WriteByte(byte(c.alphabet[x]))
		}
		return sb.String()
	}
	size := 0
	for _, x := range nums {
		size += utf8.RuneLen(c.alphabet[x])
	}
	sb.Grow(size)
	for _, x := range nums {
		sb.WriteRune(c.alphabet[x])
	}
	return sb.String()
}

// EncryptNumerals enciphers src, numerals in [0, radix), into dst (which may be src).
// It does not allocate when radix^ceil(len/2) < 2^64.
func (c *FF1) EncryptNumerals(tweak []byte, dst, src []uint16) error {
	return c.transform(tweak, dst, src, true)
}

// DecryptNumerals deciphers src into dst (which may be src).
func (c *FF1) DecryptNumerals(tweak []byte, dst, src []uint16) error {
	return c.transform(tweak, dst, src, false)
}

func (c *FF1) check(tweak []byte, dst, src []uint16) error {
	n := len(src)
	if n < c.minLen || n > MaxLen {
		return &LengthError{Length: n, Min: c.minLen, Max: MaxLen}
	}
	if len(dst) != n {
		return &LengthError{Length: len(dst), Min: n, Max: n}
	}
	if len(tweak) > MaxTweakLen {
		return TweakLengthError(len(tweak))
	}
	for i, x := range src {
		if uint32(x) >= c.radix {
			return &SymbolError{Position: i}
		}
	}
	return nil
}

func (c *FF1) transform(tweak []byte, dst, src []uint16, encrypt bool) error {
	if err := c.check(tweak, dst, src); err != nil {
		return err
	}
	if len(src) <= c.fastMaxLen {
		c.fast(tweak, dst, src, encrypt)
		return nil
	}
	c.slow(tweak, dst, src, encrypt)
	return nil
}

// params computes u, v, b and d of SP 800-38G Algorithm 7, steps 1-4, with integers:
// ceil(v·log2(radix)) equals the bit length of radix^v − 1.
func params(radix uint32, n int) (u, v, b, d int) {
	u = n / 2
	v = n - u
	rv := new(big.Int).Exp(big.NewInt(int64(radix)), big.NewInt(int64(v)), nil)
	bitsNeeded := rv.Sub(rv, big.NewInt(1)).BitLen()
	b = (bitsNeeded + 7) / 8
	d = 4*((b+3)/4) + 4
	return u, v, b, d
}

func fastParams(radix uint32, n int) (u, v, b, d int, pu, pv uint64) {
	u = n / 2
	v = n - u
	pu, pv = 1, 1
	for i := 0; i < v; i++ {
		if i < u {
			pu *= uint64(radix)
		}
		pv *= uint64(radix)
	}
	b = (bits.Len64(pv-1) + 7) / 8
	d = 4*((b+3)/4) + 4
	return u, v, b, d, pu, pv
}

// header is P of Algorithm 7 step 5.
func header(radix uint32, u, n, t int) [16]byte {
	var p [16]byte
	p[0], p[1], p[2] = 1, 2, 1
	p[3], p[4], p[5] = byte(radix>>16), byte(radix>>8), byte(radix)
	p[6] = 10
	p[7] = byte(u)
	binary.BigEndian.PutUint32(p[8:12], uint32(n))
	binary.BigEndian.PutUint32(p[12:16], uint32(t))
	return p
}

func xorBlock(dst, a, b []byte) {
	x := binary.LittleEndian.Uint64(a[0:8]) ^ binary.LittleEndian.Uint64(b[0:8])
	y := binary.LittleEndian.Uint64(a[8:16]) ^ binary.LittleEndian.Uint64(b[8:16])
	binary.LittleEndian.PutUint64(dst[0:8], x)
	binary.LittleEndian.PutUint64(dst[8:16], y)
}

// fast runs FF1 with both halves held as uint64 numbers. Because NUM_radix(STR_radix(c))
// is c, the halves never need converting back to numerals between rounds. Q's last block
// holds [i] ‖ NUM(B) (b ≤ 8), so the CBC-MAC over P and every earlier block of Q is the
// same in all ten rounds and is computed once; each round then costs one AES block
// (d ≤ 12, so S is R's first d bytes).
func (c *FF1) fast(tweak []byte, dst, src []uint16, encrypt bool) {
	n := len(src)
	radix := uint64(c.radix)
	u, _, b, d, pu, pv := fastParams(c.radix, n)

	var numA, numB uint64
	for _, x := range src[:u] {
		numA = numA*radix + uint64(x)
	}
	for _, x := range src[u:] {
		numB = numB*radix + uint64(x)
	}

	s := c.pool.Get().(*scratch)
	defer c.pool.Put(s)
	t := len(tweak)
	qLen := t + b + 1
	qLen += (16 - qLen%16) % 16
	q := s.q[:qLen]
	copy(q, tweak)
	clear(q[t:])

	state, last, r := s.state[:], s.last[:], s.r[:]
	c.headerState(state, s.p[:], u, n, t)
	for off := 0; off+16 < qLen; off += 16 {
		xorBlock(state, state, q[off:off+16])
		c.block.Encrypt(state, state)
	}
	copy(last, q[qLen-16:])

	var numBuf [8]byte
	for k := 0; k < rounds; k++ {
		i := k
		if !encrypt {
			i = rounds - 1 - k
		}
		// Q ends with [i]^1 ‖ [NUM_radix(B)]^b (decrypt feeds A, the known half).
		x := numB
		if !encrypt {
			x = numA
		}
		binary.BigEndian.PutUint64(numBuf[:], x)
		last[15-b] = byte(i)
		copy(last[16-b:], numBuf[8-b:])
		xorBlock(r, state, last)
		c.block.Encrypt(r, r)

		m := pv
		if i%2 == 0 {
			m = pu
		}
		// y = NUM(S) for S = R[:d], d ≤ 12: split into a high word and the low 8 bytes.
		var hi uint64
		for _, by := range r[:d-8] {
			hi = hi<<8 | uint64(by)
		}
		lo := binary.BigEndian.Uint64(r[d-8 : d])
		// bits.Rem64 would divide twice (hi%m, then 128/64); one division suffices
		// when hi is already reduced, and a 64-bit one when hi is zero (d = 8).
		var y uint64
		if hi == 0 {
			y = lo % m
		} else {
			if hi >= m {
				hi %= m
			}
			_, y = bits.Div64(hi, lo, m)
		}

		if encrypt {
			sum, carry := bits.Add64(numA, y, 0)
			if carry != 0 || sum >= m {
				sum -= m
			}
			numA, numB = numB, sum
		} else {
			diff := numB - y
			if numB < y {
				diff += m
			}
			numA, numB = diff, numA
		}
	}

	if radix == 10 {
		// A constant divisor compiles to a multiplication.
		putDecimal(dst[:u], numA)
		putDecimal(dst[u:], numB)
		return
	}
	for i := u - 1; i >= 0; i-- {
		dst[i] = uint16(numA % radix)
		numA /= radix
	}
	for i := n - 1; i >= u; i-- {
		dst[i] = uint16(numB % radix)
		numB /= radix
	}
}

func putDecimal(dst []uint16, x uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = uint16(x % 10)
		x /= 10
	}
}

// headerState sets state to CIPH(P), from the cache when the length and tweak length
// match. buf is scratch for P (it must not be a stack array: it goes through an interface).
func (c *FF1) headerState(state, buf []byte, u, n, t int) {
	if n <= maxCachedLen {
		if h := c.headers[n].Load(); h != nil && h.tweakLen == t {
			copy(state, h.state[:])
			return
		}
	}
	p := header(c.radix, u, n, t)
	copy(buf, p[:])
	c.block.Encrypt(state, buf)
	if n <= maxCachedLen {
		h := &headerState{tweakLen: t}
		copy(h.state[:], state)
		c.headers[n].Store(h)
	}
}

// slow is Algorithm 7 (encrypt) and 8 (decrypt) with arbitrary-precision integers, for
// domains too large for the uint64 path.
func (c *FF1) slow(tweak []byte, dst, src []uint16, encrypt bool) {
	n := len(src)
	u, v, b, d := params(c.radix, n)
	radix := big.NewInt(int64(c.radix))
	pu := new(big.Int).Exp(radix, big.NewInt(int64(u)), nil)
	pv := new(big.Int).Exp(radix, big.NewInt(int64(v)), nil)

	numA := c.num(src[:u])
	numB := c.num(src[u:])

	t := len(tweak)
	qLen := t + b + 1
	qLen += (16 - qLen%16) % 16
	q := make([]byte, qLen)
	copy(q, tweak)

	p := header(c.radix, u, n, t)
	var state [16]byte
	c.block.Encrypt(state[:], p[:])
	tail := qLen - b - 1 // [i] ‖ NUM(B) start here and may span several blocks
	firstVar := tail / 16 * 16
	for off := 0; off < firstVar; off += 16 {
		xorBlock(state[:], state[:], q[off:off+16])
		c.block.Encrypt(state[:], state[:])
	}

	sLen := (d + 15) / 16 * 16
	sBuf := make([]byte, sLen)
	var r, blk [16]byte
	y, mod := new(big.Int), new(big.Int)
	for k := 0; k < rounds; k++ {
		i := k
		if !encrypt {
			i = rounds - 1 - k
		}
		x := numB
		if !encrypt {
			x = numA
		}
		q[tail] = byte(i)
		x.FillBytes(q[tail+1:])
		r = state
		for off := firstVar; off < qLen; off += 16 {
			xorBlock(r[:], r[:], q[off:off+16])
			c.block.Encrypt(r[:], r[:])
		}
		// S = R ‖ CIPH(R ⊕ [1]^16) ‖ CIPH(R ⊕ [2]^16) ‖ …, first d bytes.
		copy(sBuf, r[:])
		for j := 1; j*16 < d; j++ {
			var ctr [16]byte
			binary.BigEndian.PutUint64(ctr[8:], uint64(j))
			xorBlock(blk[:], r[:], ctr[:])
			c.block.Encrypt(sBuf[j*16:], blk[:])
		}
		y.SetBytes(sBuf[:d])
		m := pv
		if i%2 == 0 {
			m = pu
		}
		if encrypt {
			mod.Add(numA, y)
			mod.Mod(mod, m)
			numA, numB = numB, new(big.Int).Set(mod)
		} else {
			mod.Sub(numB, y)
			mod.Mod(mod, m) // Go's Mod is Euclidean: the result is in [0, m)
			numA, numB = new(big.Int).Set(mod), numA
		}
	}
	c.str(numA, dst[:u])
	c.str(numB, dst[u:])
}

func (c *FF1) num(x []uint16) *big.Int {
	r := new(big.Int)
	radix := big.NewInt(int64(c.radix))
	sym := new(big.Int)
	for _, s := range x {
		r.Mul(r, radix)
		r.Add(r, sym.SetUint64(uint64(s)))
	}
	return r
}

func (c *FF1) str(x *big.Int, dst []uint16) {
	radix := big.NewInt(int64(c.radix))
	q, m := new(big.Int).Set(x), new(big.Int)
	for i := len(dst) - 1; i >= 0; i-- {
		q.DivMod(q, radix, m)
		dst[i] = uint16(m.Uint64())
	}
}
