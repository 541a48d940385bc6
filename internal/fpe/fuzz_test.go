package fpe

import (
	"testing"
	"unicode/utf8"
)

// FuzzEncryptDecrypt feeds arbitrary alphabets, tweaks and inputs. The cipher must never
// panic; when it accepts an input, decryption must give it back and the ciphertext must
// have the same length in the same alphabet.
func FuzzEncryptDecrypt(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), "0123456789", []byte(""), "0123456789")
	f.Add([]byte("0123456789abcdef"), "0123456789abcdefghijklmnopqrstuvwxyz", []byte("tweak"), "0123456789abcdefghi")
	f.Add([]byte("0123456789abcdef01234567"), "01", []byte{0, 1, 2}, "01010101010101010101")
	f.Add([]byte("0123456789abcdef0123456789abcdef"), "αβγδεζηθικ", []byte("t"), "αβγδεζηθ")
	f.Add([]byte("short"), "0123456789", []byte(""), "12345")
	f.Add([]byte("0123456789abcdef"), "aa", []byte(""), "aaaaaaaaaaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, key []byte, alphabet string, tweak []byte, input string) {
		c, err := NewFF1(key, alphabet)
		if err != nil {
			return
		}
		ct, err := c.Encrypt(tweak, input)
		if err != nil {
			return
		}
		if utf8.RuneCountInString(ct) != utf8.RuneCountInString(input) {
			t.Fatalf("length changed: %d -> %d", utf8.RuneCountInString(input), utf8.RuneCountInString(ct))
		}
		pt, err := c.Decrypt(tweak, ct)
		if err != nil {
			t.Fatalf("decrypt of own ciphertext failed: %v", err)
		}
		if pt != input {
			t.Fatal("round trip mismatch")
		}
	})
}

// FuzzDecrypt checks that decrypting arbitrary input never panics and, when accepted,
// re-encrypts to the same input (FF1 is a permutation).
func FuzzDecrypt(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), "0123456789", []byte("x"), "2433477484")
	f.Add([]byte("0123456789abcdef"), "ab", []byte(""), "abababababababababababab")
	f.Fuzz(func(t *testing.T, key []byte, alphabet string, tweak []byte, input string) {
		c, err := NewFF1(key, alphabet)
		if err != nil {
			return
		}
		pt, err := c.Decrypt(tweak, input)
		if err != nil {
			return
		}
		ct, err := c.Encrypt(tweak, pt)
		if err != nil {
			t.Fatalf("encrypt of own plaintext failed: %v", err)
		}
		if ct != input {
			t.Fatal("permutation mismatch")
		}
	})
}
