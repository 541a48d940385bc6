package fpe

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type vector struct {
	ID         string `json:"id"`
	Key        string `json:"key"`
	Tweak      string `json:"tweak"`
	Radix      int    `json:"radix"`
	Alphabet   string `json:"alphabet"`
	Plaintext  string `json:"plaintext"`
	Ciphertext string `json:"ciphertext"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	raw, err := os.ReadFile("testdata/ff1_vectors.json")
	require.NoError(t, err)
	var vs []vector
	require.NoError(t, json.Unmarshal(raw, &vs))
	require.NotEmpty(t, vs)
	return vs
}

func TestVectors(t *testing.T) {
	t.Parallel()
	radixes := map[int]bool{}
	for _, v := range loadVectors(t) {
		radixes[v.Radix] = true
		t.Run(v.ID, func(t *testing.T) {
			t.Parallel()
			key, err := hex.DecodeString(v.Key)
			require.NoError(t, err)
			tweak, err := hex.DecodeString(v.Tweak)
			require.NoError(t, err)
			c, err := NewFF1(key, v.Alphabet)
			require.NoError(t, err)
			require.Equal(t, v.Radix, c.Radix())

			ct, err := c.Encrypt(tweak, v.Plaintext)
			require.NoError(t, err)
			assert.Equal(t, v.Ciphertext, ct, "encrypt")
			pt, err := c.Decrypt(tweak, v.Ciphertext)
			require.NoError(t, err)
			assert.Equal(t, v.Plaintext, pt, "decrypt")
		})
	}
	for _, r := range []int{10, 26, 36, 64} {
		assert.True(t, radixes[r], "vectors cover radix %d", r)
	}
}

// TestFastMatchesBig checks the uint64 path against the arbitrary-precision path, which
// follows the standard's algorithm step by step, on random inputs where both apply.
func TestFastMatchesBig(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(1, 2))
	for iter := 0; iter < 3000; iter++ {
		radix := 2 + rng.IntN(300)
		if iter%3 == 0 {
			radix = []int{2, 10, 16, 26, 36, 62, 64, 256, 65536}[rng.IntN(9)]
		}
		c := newTestCipher(t, rng, radix)
		if c.fastMaxLen < c.minLen {
			continue
		}
		n := c.minLen + rng.IntN(c.fastMaxLen-c.minLen+1)
		src := randomNumerals(rng, radix, n)
		tweak := randomBytes(rng, rng.IntN(40))

		fast := make([]uint16, n)
		slow := make([]uint16, n)
		c.fast(tweak, fast, src, true)
		c.slow(tweak, slow, src, true)
		require.Equal(t, slow, fast, "encrypt radix %d length %d tweak %d", radix, n, len(tweak))
		c.fast(tweak, fast, slow, false)
		c.slow(tweak, slow, slow, false)
		require.Equal(t, slow, fast, "decrypt radix %d length %d", radix, n)
		require.Equal(t, src, fast)
	}
}

func TestRoundTripProperty(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(3, 4))
	alphabets := []string{
		"0123456789",
		"abcdefghijklmnopqrstuvwxyz",
		"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
		"αβγδεζηθικλμνξοπρστυφχψω",
		"01",
		"日本語漢字ひらがなカタ",
		"aé🙂\u0300Z",
	}
	for iter := 0; iter < 2000; iter++ {
		alphabet := []rune(alphabets[rng.IntN(len(alphabets))])
		key := randomBytes(rng, []int{16, 24, 32}[rng.IntN(3)])
		c, err := NewFF1(key, string(alphabet))
		require.NoError(t, err)
		n := c.MinLen() + rng.IntN(60)
		in := make([]rune, n)
		for i := range in {
			in[i] = alphabet[rng.IntN(len(alphabet))]
		}
		tweak := randomBytes(rng, rng.IntN(MaxTweakLen+1))
		ct, err := c.Encrypt(tweak, string(in))
		require.NoError(t, err)
		ctRunes := []rune(ct)
		require.Len(t, ctRunes, n, "same length")
		for _, r := range ctRunes {
			require.Contains(t, alphabet, r, "output symbol in alphabet")
		}
		pt, err := c.Decrypt(tweak, ct)
		require.NoError(t, err)
		require.Equal(t, string(in), pt)
	}
}

func TestTweakChangesCiphertext(t *testing.T) {
	t.Parallel()
	c, err := NewFF1(make([]byte, 32), "0123456789")
	require.NoError(t, err)
	a, err := c.Encrypt([]byte("class=ssn"), "123456789")
	require.NoError(t, err)
	b, err := c.Encrypt([]byte("class=mrn"), "123456789")
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c, err := NewFF1(key, "0123456789abcdefghijklmnopqrstuvwxyz")
	require.NoError(t, err)

	type op struct {
		tweak   []byte
		in      string
		encrypt bool
	}
	rng := mrand.New(mrand.NewPCG(5, 6))
	const ops = 10_000
	work := make([]op, ops)
	for i := range work {
		n := 4 + rng.IntN(40) // includes both paths: radix 36 fast up to 24 symbols
		b := make([]byte, n)
		for j := range b {
			b[j] = "0123456789abcdefghijklmnopqrstuvwxyz"[rng.IntN(36)]
		}
		work[i] = op{tweak: randomBytes(rng, rng.IntN(20)), in: string(b), encrypt: rng.IntN(2) == 0}
	}
	want := make([]string, ops)
	for i, w := range work {
		want[i] = apply(c, w.tweak, w.in, w.encrypt)
	}

	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < ops; k++ {
				i := (k + g*311) % ops // every goroutine does all ops, in a different order
				if got := apply(c, work[i].tweak, work[i].in, work[i].encrypt); got != want[i] {
					errs <- "mismatch"
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	assert.Empty(t, errs)
}

func apply(c *FF1, tweak []byte, in string, encrypt bool) string {
	var out string
	var err error
	if encrypt {
		out, err = c.Encrypt(tweak, in)
	} else {
		out, err = c.Decrypt(tweak, in)
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return out
}

func TestDomainBoundaries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		alphabet string
		ok, bad  int
	}{
		{"0123456789", 6, 5},
		{"abcdefghijklmnopqrstuvwxyz", 5, 4},
		{"01", 20, 19},
	}
	for _, tt := range tests {
		t.Run(tt.alphabet, func(t *testing.T) {
			t.Parallel()
			c, err := NewFF1(make([]byte, 16), tt.alphabet)
			require.NoError(t, err)
			sym := string([]rune(tt.alphabet)[1])
			in := func(n int) string {
				s := ""
				for range n {
					s += sym
				}
				return s
			}
			ct, err := c.Encrypt(nil, in(tt.ok))
			require.NoError(t, err)
			_, err = c.Decrypt(nil, ct)
			require.NoError(t, err)

			_, err = c.Encrypt(nil, in(tt.bad))
			var le *LengthError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, tt.ok, le.Min)
			_, err = c.Decrypt(nil, in(tt.bad))
			require.ErrorAs(t, err, &le)
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 15, 17, 31, 33, 64} {
		_, err := NewFF1(make([]byte, n), "0123456789")
		var ke KeySizeError
		require.ErrorAs(t, err, &ke, "key of %d bytes", n)
	}
	for _, a := range []string{"", "0", "0120", "ab\xff"} {
		_, err := NewFF1(make([]byte, 16), a)
		var ae *AlphabetError
		require.ErrorAs(t, err, &ae, "alphabet %q", a)
	}
	c, err := NewFF1(make([]byte, 16), "0123456789")
	require.NoError(t, err)

	secret := "12345x7890"
	_, err = c.Encrypt(nil, secret)
	var se *SymbolError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 5, se.Position)
	assert.NotContains(t, err.Error(), secret)
	assert.NotContains(t, err.Error(), "x")

	_, err = c.Encrypt(make([]byte, MaxTweakLen+1), "1234567890")
	var te TweakLengthError
	require.ErrorAs(t, err, &te)

	err = c.EncryptNumerals(nil, make([]uint16, 10), []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	require.ErrorAs(t, err, &se, "numeral out of range")
	assert.Equal(t, 9, se.Position)

	_, err = c.Encrypt(nil, string(make([]byte, MaxLen+1)))
	var le *LengthError
	require.ErrorAs(t, err, &le)

	// Position is counted in symbols, not bytes, for non-ASCII alphabets.
	g, err := NewFF1(make([]byte, 16), "αβγδεζηθικ")
	require.NoError(t, err)
	_, err = g.Encrypt(nil, "αβγδεZηθικ")
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 5, se.Position)
	assert.True(t, errors.As(err, &se))
}

func TestNumeralAPIDoesNotAllocate(t *testing.T) {
	c, err := NewFF1(make([]byte, 32), "0123456789")
	require.NoError(t, err)
	nums := []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6}
	tweak := []byte("tweak")
	allocs := testing.AllocsPerRun(200, func() {
		_ = c.EncryptNumerals(tweak, nums, nums)
		_ = c.DecryptNumerals(tweak, nums, nums)
	})
	assert.Zero(t, allocs)

	buf := make([]byte, 0, 32)
	allocs = testing.AllocsPerRun(200, func() {
		buf, _ = c.AppendEncrypt(buf[:0], tweak, "1234567890123456")
	})
	assert.Zero(t, allocs)
	pt, err := c.AppendDecrypt(nil, tweak, string(buf))
	require.NoError(t, err)
	assert.Equal(t, "1234567890123456", string(pt))
}

func newTestCipher(t *testing.T, rng *mrand.Rand, radix int) *FF1 {
	t.Helper()
	alphabet := make([]rune, radix)
	for i := range alphabet {
		alphabet[i] = rune(0x10000 + i) // distinct, valid symbols for any radix up to 65536
		if i < 10 {
			alphabet[i] = rune('0' + i)
		}
	}
	c, err := NewFF1(randomBytes(rng, 16+8*rng.IntN(3)), string(alphabet))
	require.NoError(t, err)
	return c
}

func randomNumerals(rng *mrand.Rand, radix, n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = uint16(rng.IntN(radix))
	}
	return out
}

func randomBytes(rng *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
