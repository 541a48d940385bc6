// Package audit is the hash-chained, append-only audit log: one event per request,
// written before the response (and before any revealed value) leaves the process;
// Vault-signed checkpoints; verification; exports; the accounting of disclosures.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// FormatVersion is the version of the canonical event encoding (docs/audit.md).
const FormatVersion = 1

// TimeLayout is how event times are written: UTC, microseconds, always 6 digits.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Event is one audited request. It holds no value and no token: revealed and deleted
// tokens appear only as keyed digests.
type Event struct {
	Seq           int64
	Time          time.Time
	RequestID     string
	Caller        string
	Operation     string
	Classes       []string
	Items         int
	ItemsFailed   int
	Outcome       string // a gRPC code name: OK, PERMISSION_DENIED, ...
	Reason        string // why a request was refused or failed, caller-safe
	PurposeOfUse  string
	Justification string
	ClientAddress string
	BreakGlass    bool
	Masked        bool
	TokenDigests  [][]byte
	// SubjectDigests are the audit digests of the data subjects (patients) the request
	// touched: reveals of a subject's tokens, an erasure. Omitted from the canonical
	// form when empty, so events without subjects encode as before.
	SubjectDigests [][]byte
	// Erased counts the mappings an erasure deleted, per class (the erasure receipt).
	// Omitted from the canonical form when empty.
	Erased map[string]int64
	// Grants are the ids of the grants a request revealed under, or created, approved or
	// revoked. Omitted from the canonical form when empty.
	Grants []string
	// OnBehalfOf is the end user the caller says it acts for (a warehouse's session user,
	// an EHR's clinician), as the caller asserted it: the caller is the authenticated
	// party. Omitted from the canonical form when empty.
	OnBehalfOf string
}

// Canonical is the event's canonical encoding, the bytes the chain hashes: a JSON
// object with the keys in byte order, no white space, integers in decimal, strings
// escaped only where JSON requires (", \ and U+0000-U+001F, as \u00xx in lower-case
// hex, except \b \f \n \r \t), invalid UTF-8 replaced by U+FFFD, classes sorted and
// unique, token digests in lower-case hex, in request order.
func (e *Event) Canonical() []byte {
	classes := slices.Clone(e.Classes)
	slices.Sort(classes)
	classes = slices.Compact(classes)
	// Sized for the usual event at once: the digests, in hex and quoted, are most of a
	// large one.
	size := 512 + len(e.Justification) + len(e.Reason) + len(e.OnBehalfOf)
	for _, d := range e.TokenDigests {
		size += 2*len(d) + 3
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	b = appendBool(b, "break_glass", e.BreakGlass)
	b = appendString(b, ",", "caller", e.Caller)
	b = appendStrings(b, "classes", classes)
	b = appendString(b, ",", "client_address", e.ClientAddress)
	if len(e.Erased) > 0 {
		b = appendCounts(b, "erased", e.Erased)
	}
	if len(e.Grants) > 0 {
		grants := slices.Clone(e.Grants)
		slices.Sort(grants)
		b = appendStrings(b, "grants", slices.Compact(grants))
	}
	b = appendInt(b, "items", int64(e.Items))
	b = appendInt(b, "items_failed", int64(e.ItemsFailed))
	b = appendString(b, ",", "justification", e.Justification)
	b = append(b, ',')
	b = appendBool(b, "masked", e.Masked)
	if e.OnBehalfOf != "" {
		b = appendString(b, ",", "on_behalf_of", e.OnBehalfOf)
	}
	b = appendString(b, ",", "operation", e.Operation)
	b = appendString(b, ",", "outcome", e.Outcome)
	b = appendString(b, ",", "purpose_of_use", e.PurposeOfUse)
	b = appendString(b, ",", "reason", e.Reason)
	b = appendString(b, ",", "request_id", e.RequestID)
	b = appendInt(b, "seq", e.Seq)
	if len(e.SubjectDigests) > 0 {
		subjects := make([]string, len(e.SubjectDigests))
		for i, d := range e.SubjectDigests {
			subjects[i] = hex.EncodeToString(d)
		}
		slices.Sort(subjects)
		b = appendStrings(b, "subject_digests", slices.Compact(subjects))
	}
	b = appendString(b, ",", "time", e.Time.UTC().Format(TimeLayout))
	b = appendHexList(b, "token_digests", e.TokenDigests)
	b = appendInt(b, "version", FormatVersion)
	b = append(b, '}')
	return b
}

// Hash is SHA-256(prev ‖ body).
func Hash(prev, body []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(body)
	return h.Sum(nil)
}

// GenesisHash is the prev_hash of the first event: 32 zero bytes.
var GenesisHash = make([]byte, sha256.Size)

func appendKey(b []byte, key string) []byte {
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendBool(b []byte, key string, v bool) []byte {
	b = appendKey(b, key)
	return strconv.AppendBool(b, v)
}

func appendInt(b []byte, key string, v int64) []byte {
	b = append(b, ',')
	b = appendKey(b, key)
	return strconv.AppendInt(b, v, 10)
}

func appendString(b []byte, sep, key, v string) []byte {
	b = append(b, sep...)
	b = appendKey(b, key)
	return appendQuoted(b, v)
}

func appendStrings(b []byte, key string, vs []string) []byte {
	b = append(b, ',')
	b = appendKey(b, key)
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendQuoted(b, v)
	}
	return append(b, ']')
}

// appendHexList appends a list of byte strings as quoted lower-case hex, in order:
// what appendStrings of their hex.EncodeToString forms would, without the strings.
func appendHexList(b []byte, key string, vs [][]byte) []byte {
	b = append(b, ',')
	b = appendKey(b, key)
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = hex.AppendEncode(b, v)
		b = append(b, '"')
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendCounts appends an object of counts, its keys in byte order.
func appendCounts(b []byte, key string, counts map[string]int64) []byte {
	b = append(b, ',')
	b = appendKey(b, key)
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(counts)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendQuoted(b, k)
		b = append(b, ':')
		b = strconv.AppendInt(b, counts[k], 10)
	}
	return append(b, '}')
}

func appendQuoted(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b = append(b, '\\', '"')
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
