package fpe

import (
	"testing"

	capff1 "github.com/capitalone/fpe/ff1"

	ours "github.com/phivault/tokenizer/internal/fpe"
)

var cases = []struct {
	name, alphabet, input string
	radix                 int
}{
	{"digits9", "0123456789", "123456789", 10},
	{"digits16", "0123456789", "4111111111111111", 10},
	{"alnum20", "0123456789abcdefghijklmnopqrstuvwxyz", "0123456789abcdefghij", 36},
}

var (
	key   = []byte("0123456789abcdef0123456789abcdef") // AES-256
	tweak = []byte("class=ssn")
)

// TestSameCiphertexts makes sure the benchmark compares like with like.
func TestSameCiphertexts(t *testing.T) {
	for _, tc := range cases {
		o, err := ours.NewFF1(key, tc.alphabet)
		if err != nil {
			t.Fatal(err)
		}
		c, err := capff1.NewCipher(tc.radix, len(tweak), key, tweak)
		if err != nil {
			t.Fatal(err)
		}
		a, err := o.Encrypt(tweak, tc.input)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Encrypt(tc.input)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("%s: ciphertexts differ", tc.name)
		}
	}
}

func BenchmarkFF1(b *testing.B) {
	for _, tc := range cases {
		o, err := ours.NewFF1(key, tc.alphabet)
		if err != nil {
			b.Fatal(err)
		}
		c, err := capff1.NewCipher(tc.radix, len(tweak), key, tweak)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/tokenizer", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := o.Encrypt(tweak, tc.input); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/tokenizer-append", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 32)
			for b.Loop() {
				if buf, err = o.AppendEncrypt(buf[:0], tweak, tc.input); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/capitalone", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Encrypt(tc.input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
