package fpe

import "fmt"

// Errors never include the input or the key: only sizes and positions.

// KeySizeError reports a key that is not 16, 24 or 32 bytes long.
type KeySizeError int

func (e KeySizeError) Error() string {
	return fmt.Sprintf("fpe: key is %d bytes; FF1 needs an AES key of 16, 24 or 32 bytes", int(e))
}

// AlphabetError reports an unusable alphabet.
type AlphabetError struct {
	Reason string
	// Position is the index of the offending symbol, when there is one.
	Position int
}

func (e *AlphabetError) Error() string {
	if e.Reason == "alphabet repeats a symbol" {
		return fmt.Sprintf("fpe: %s (at position %d)", e.Reason, e.Position)
	}
	return "fpe: " + e.Reason
}

// SymbolError reports an input character that is not in the alphabet.
type SymbolError struct {
	Position int
}

func (e *SymbolError) Error() string {
	return fmt.Sprintf("fpe: input character at position %d is not in the alphabet", e.Position)
}

// LengthError reports an input whose length is outside [Min, Max]. A length below Min
// means the domain radix^length is under 1,000,000 (SP 800-38G Rev.1 §5.2).
type LengthError struct {
	Length, Min, Max int
}

func (e *LengthError) Error() string {
	if e.Length < e.Min {
		return fmt.Sprintf("fpe: input has %d symbols; this alphabet needs at least %d so that radix^length ≥ 1,000,000 (SP 800-38G Rev.1)", e.Length, e.Min)
	}
	return fmt.Sprintf("fpe: input has %d symbols; at most %d are accepted", e.Length, e.Max)
}

// TweakLengthError reports a tweak longer than MaxTweakLen.
type TweakLengthError int

func (e TweakLengthError) Error() string {
	return fmt.Sprintf("fpe: tweak is %d bytes; at most %d are accepted", int(e), MaxTweakLen)
}
