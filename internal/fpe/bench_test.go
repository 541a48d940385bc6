package fpe

import "testing"

var benchCases = []struct {
	name, alphabet, input string
}{
	{"digits9", "0123456789", "123456789"},
	{"digits16", "0123456789", "4111111111111111"},
	{"digits19", "0123456789", "1234567890123456789"},
	{"alnum20", "0123456789abcdefghijklmnopqrstuvwxyz", "0123456789abcdefghij"},
}

func BenchmarkEncrypt(b *testing.B) {
	key := make([]byte, 32)
	tweak := []byte("class=ssn scope=")
	for _, bc := range benchCases {
		c, err := NewFF1(key, bc.alphabet)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name+"/string", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Encrypt(tweak, bc.input); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/append", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 64)
			for b.Loop() {
				var err error
				if buf, err = c.AppendEncrypt(buf[:0], tweak, bc.input); err != nil {
					b.Fatal(err)
				}
			}
		})
		nums := make([]uint16, len(bc.input))
		if err := c.toNumerals(bc.input, nums); err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name+"/numerals", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.EncryptNumerals(tweak, nums, nums); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncryptParallel(b *testing.B) {
	c, err := NewFF1(make([]byte, 32), "0123456789")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		nums := []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9}
		for pb.Next() {
			_ = c.EncryptNumerals(nil, nums, nums)
		}
	})
}
