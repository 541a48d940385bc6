package audit_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/phivault/tokenizer/internal/audit"
)

// FuzzCanonical encodes events with arbitrary caller-supplied strings (request ids,
// justifications, reasons): the body is always valid JSON and decodes back to the
// strings, with invalid UTF-8 replaced by U+FFFD.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\b\f\n\r\t", "\x00\x1f\x7f", "<&>", "\xff\xc3", "\u2028Zoë"} {
		f.Add(s, s, int64(1))
	}
	f.Fuzz(func(t *testing.T, a, b string, seq int64) {
		ev := audit.Event{Seq: seq, RequestID: a, Justification: b, Reason: a + b, Classes: []string{b, a}}
		body := ev.Canonical()
		if !json.Valid(body) {
			t.Fatalf("not JSON: %q", body)
		}
		d, err := audit.Decode(string(body))
		if err != nil {
			t.Fatal(err)
		}
		valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
		if d.RequestID != valid(a) || d.Justification != valid(b) || d.Reason != valid(a+b) || d.Seq != seq {
			t.Fatalf("decoded %+v differs from the event", d)
		}
	})
}
