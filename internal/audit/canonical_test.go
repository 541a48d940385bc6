package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
)

// TestCanonicalGolden pins the canonical encoding to bytes written out by hand from
// docs/audit.md: keys in byte order, no white space, classes sorted and unique, time in
// UTC with six truncated fractional digits, digests in lower-case hex in request order.
func TestCanonicalGolden(t *testing.T) {
	t.Parallel()
	ev := audit.Event{
		Seq:           42,
		Time:          time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CET", 3600)),
		RequestID:     "req-1",
		Caller:        "spiffe://example.org/billing",
		Operation:     "detokenize",
		Classes:       []string{"ssn", "mrn", "ssn"},
		Items:         3,
		ItemsFailed:   1,
		Outcome:       "OK",
		PurposeOfUse:  "TREAT",
		Justification: "ward 7\t\"urgent\"\\",
		ClientAddress: "10.0.0.7:51234",
		BreakGlass:    true,
		TokenDigests:  [][]byte{{0xde, 0xad, 0xBE, 0xef}, {0x01}},
	}
	want := `{"break_glass":true,"caller":"spiffe://example.org/billing","classes":["mrn","ssn"],` +
		`"client_address":"10.0.0.7:51234","items":3,"items_failed":1,` +
		`"justification":"ward 7\t\"urgent\"\\","masked":false,"operation":"detokenize",` +
		`"outcome":"OK","purpose_of_use":"TREAT","reason":"","request_id":"req-1","seq":42,` +
		`"time":"2026-01-02T02:04:05.123456Z","token_digests":["deadbeef","01"],"version":1}`
	assert.Equal(t, want, string(ev.Canonical()))
	assert.Equal(t, []string{"ssn", "mrn", "ssn"}, ev.Classes, "Canonical leaves the event's classes alone")

	empty := `{"break_glass":false,"caller":"","classes":[],"client_address":"","items":0,"items_failed":0,` +
		`"justification":"","masked":false,"operation":"","outcome":"","purpose_of_use":"","reason":"",` +
		`"request_id":"","seq":0,"time":"0001-01-01T00:00:00.000000Z","token_digests":[],"version":1}`
	assert.Equal(t, empty, string((&audit.Event{}).Canonical()), "absent lists are [], never null")
}

func TestCanonicalKeysInByteOrder(t *testing.T) {
	t.Parallel()
	ev := audit.Event{Seq: 1, Caller: "c", Classes: []string{"a"}, Masked: true, TokenDigests: [][]byte{{1}}}
	dec := json.NewDecoder(bytes.NewReader(ev.Canonical()))
	open, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), open)
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, k.(string))
		var v json.RawMessage
		require.NoError(t, dec.Decode(&v))
	}
	require.Len(t, keys, 17, "every field of docs/audit.md, once")
	assert.True(t, slices.IsSorted(keys), "keys in byte order: %v", keys)
	assert.Equal(t, "break_glass", keys[0])
	assert.Equal(t, "version", keys[16])
}

func TestCanonicalStringEscaping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string // the JSON string as encoded, with quotes
	}{
		{"plain", "abc", `"abc"`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"short escapes", "\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"NUL", "\x00", `"\u0000"`},
		{"other controls in lower-case hex", "\x01\x1a\x1f", `"\u0001\u001a\u001f"`},
		{"DEL is not escaped", "\x7f", "\"\x7f\""},
		{"HTML characters are not escaped", "<a href='x'>&</a>", `"<a href='x'>&</a>"`},
		{"slash is not escaped", "a/b", `"a/b"`},
		{"non-ASCII as UTF-8", "Zoë 東京", `"Zoë 東京"`},
		{"line separator as UTF-8", "\u2028", "\"\u2028\""},
		{"invalid UTF-8 becomes U+FFFD", "a\xffb", "\"a\uFFFDb\""},
		{"truncated sequence becomes U+FFFD", "a\xc3", "\"a\uFFFD\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, field := range []string{"caller", "justification", "reason", "request_id"} {
				ev := audit.Event{}
				switch field {
				case "caller":
					ev.Caller = tt.in
				case "justification":
					ev.Justification = tt.in
				case "reason":
					ev.Reason = tt.in
				case "request_id":
					ev.RequestID = tt.in
				}
				body := ev.Canonical()
				assert.Contains(t, string(body), `"`+field+`":`+tt.want, field)
				assert.True(t, json.Valid(body), field)
			}
		})
	}
}

func TestCanonicalNumbersAndStability(t *testing.T) {
	t.Parallel()
	base := audit.Event{Seq: 1<<63 - 1, Items: 1000000, Classes: []string{"b", "a"}, Time: time.Unix(0, 999).UTC()}
	body := string(base.Canonical())
	assert.Contains(t, body, `"seq":9223372036854775807,`)
	assert.Contains(t, body, `"items":1000000,`, "integers in decimal, never exponent form")
	assert.Contains(t, body, `"time":"1970-01-01T00:00:00.000000Z"`, "sub-microsecond digits are dropped")

	same := base
	same.Classes = []string{"a", "b", "a", "b"}
	assert.Equal(t, base.Canonical(), same.Canonical(), "class order and duplicates do not change the bytes")
	same.Time = base.Time.In(time.FixedZone("X", -7*3600))
	assert.Equal(t, base.Canonical(), same.Canonical(), "the zone of the time does not change the bytes")

	digests := audit.Event{TokenDigests: [][]byte{{2}, {1}}}
	swapped := audit.Event{TokenDigests: [][]byte{{1}, {2}}}
	assert.NotEqual(t, digests.Canonical(), swapped.Canonical(), "digests keep request order")
}

func TestCanonicalDecodesBack(t *testing.T) {
	t.Parallel()
	ev := audit.Event{Seq: 9, Time: time.Date(2026, 11, 21, 8, 0, 0, 1000, time.UTC), RequestID: "r", Caller: "c\n",
		Operation: "delete_tokens", Classes: []string{"z", "a"}, Items: 2, ItemsFailed: 2, Outcome: "NOT_FOUND",
		Reason: "no such token", PurposeOfUse: "HPAYMT", Justification: "j", ClientAddress: "[::1]:1", Masked: true,
		TokenDigests: [][]byte{{0xab}}}
	d, err := audit.Decode(string(ev.Canonical()))
	require.NoError(t, err)
	assert.Equal(t, audit.Decoded{BreakGlass: false, Caller: "c\n", Classes: []string{"a", "z"}, ClientAddress: "[::1]:1",
		Items: 2, ItemsFailed: 2, Justification: "j", Masked: true, Operation: "delete_tokens", Outcome: "NOT_FOUND",
		PurposeOfUse: "HPAYMT", Reason: "no such token", RequestID: "r", Seq: 9, Time: "2026-11-21T08:00:00.000001Z",
		TokenDigests: []string{"ab"}, Version: audit.FormatVersion}, d)

	_, err = audit.Decode("{not json")
	assert.Error(t, err)
}

func TestHash(t *testing.T) {
	t.Parallel()
	abc, _ := hex.DecodeString("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") // FIPS 180-2 "abc"
	zeros := make([]byte, 32)
	body := []byte(`{"seq":1}`)
	joined := sha256.Sum256(append(bytes.Clone(zeros), body...))
	tests := []struct {
		name       string
		prev, body []byte
		want       []byte
	}{
		{"SHA-256 test vector", nil, []byte("abc"), abc},
		{"prev then body", []byte("ab"), []byte("c"), abc},
		{"genesis link", audit.GenesisHash, body, joined[:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, audit.Hash(tt.prev, tt.body))
		})
	}
	assert.Equal(t, zeros, audit.GenesisHash, "the genesis prev_hash is 32 zero bytes")
	assert.NotEqual(t, audit.Hash(zeros, body), audit.Hash(abc, body), "the hash depends on prev")
}

func TestRecordInContext(t *testing.T) {
	t.Parallel()
	ctx, r := audit.WithRecord(context.Background())
	require.NotNil(t, r)
	r.Items = 3
	assert.Same(t, r, audit.RecordFrom(ctx), "handlers fill the record the server put in the context")

	a, b := audit.RecordFrom(context.Background()), audit.RecordFrom(context.Background())
	require.NotNil(t, a)
	a.Items = 7
	assert.Zero(t, b.Items, "without a record, each call gets its own throwaway")
	assert.NoError(t, audit.Noop{}.Append(ctx, &audit.Event{}))
}

// The end user a caller acts for is encoded between masked and operation (byte order),
// only when there is one, so events without it encode as before; it decodes back.
func TestCanonicalOnBehalfOf(t *testing.T) {
	t.Parallel()
	ev := audit.Event{Seq: 3, Caller: "spiffe://example.org/bq-connector", Operation: "tokenize", Outcome: "OK",
		OnBehalfOf: "bigquery session user ana@example.org"}
	want := `{"break_glass":false,"caller":"spiffe://example.org/bq-connector","classes":[],"client_address":"",` +
		`"items":0,"items_failed":0,"justification":"","masked":false,` +
		`"on_behalf_of":"bigquery session user ana@example.org","operation":"tokenize","outcome":"OK",` +
		`"purpose_of_use":"","reason":"","request_id":"","seq":3,"time":"0001-01-01T00:00:00.000000Z",` +
		`"token_digests":[],"version":1}`
	assert.Equal(t, want, string(ev.Canonical()))
	d, err := audit.Decode(string(ev.Canonical()))
	require.NoError(t, err)
	assert.Equal(t, "bigquery session user ana@example.org", d.OnBehalfOf)
	ev.OnBehalfOf = ""
	assert.NotContains(t, string(ev.Canonical()), "on_behalf_of")
}
