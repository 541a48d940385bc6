package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/testutil/netproxy"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
	"github.com/phivault/tokenizer/internal/tokenizer"
	"github.com/phivault/tokenizer/internal/vault"
)

// samples are values of every default class, with the shape their tokens must have.
var samples = []struct {
	class, value string
	token        *regexp.Regexp
}{
	{"ssn", "123-45-6789", regexp.MustCompile(`^9\d\d-\d\d-\d{4}$`)},
	{"ssn", "219099999", regexp.MustCompile(`^9\d{8}$`)},
	{"phone", "(415) 555-0132", regexp.MustCompile(`^\([2-9]9\d\) [2-9]\d\d-\d{4}$`)},
	{"phone", "+1 212 555 0199", regexp.MustCompile(`^\+1 [2-9]9\d [2-9]\d\d \d{4}$`)},
	{"email", "Jane.Doe77@example.org", regexp.MustCompile(`^[a-z0-9]{4}\.[a-z0-9]{5}@example\.org$`)},
	{"name", "María-José O'Neil", regexp.MustCompile(`^[A-Z][a-z]{4}-[A-Z][a-z]{3} [A-Z]'[A-Z][a-z]{3}$`)},
	{"date", "1984-02-29", regexp.MustCompile(`^(2[2-9]|[3-9]\d)\d\d-\d\d-\d\d$`)},
	{"npi", "1234567893", regexp.MustCompile(`^[03-9]\d{9}$`)},
	{"credit_card", "4111 1111 1111 1111", regexp.MustCompile(`^\d{4} \d{4} \d{4} \d{4}$`)},
	{"mrn", "MRN-00012345", regexp.MustCompile(`^MRN-\d{8}$`)},
	{"ssn_fpe", "123-45-6789", regexp.MustCompile(`^\d{3}-\d\d-\d{4}$`)},
	{"ssn_dynamic", "123-45-6789", regexp.MustCompile(`^9\d\d-\d\d-\d{4}$`)},
}

func tokenizeAll(t *testing.T, r *running, scope string) []string {
	t.Helper()
	req := &tokenizerv1.TokenizeRequest{}
	for i, s := range samples {
		req.Items = append(req.Items, &tokenizerv1.TokenizeItem{Class: s.class, Value: s.value, Scope: scope, Reference: fmt.Sprint(i)})
	}
	resp, err := r.tokenizer().Tokenize(t.Context(), req)
	require.NoError(t, err)
	out := make([]string, len(samples))
	for i, res := range resp.Results {
		require.Nil(t, res.Error, "%s: %v", samples[i].class, res.Error)
		out[i] = res.Token
	}
	return out
}

func TestEveryClassOverGRPCAndRESTWithVault(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	e := newEnv(t)
	e.vaultAddr = v.Addr
	e.mutate = func(c *config.Config) { c.Audit.CheckpointEvery = 2 }
	r := e.start(t, true)
	tokens := tokenizeAll(t, r, "")
	for i, s := range samples {
		assert.Regexp(t, s.token, tokens[i], s.class)
		assert.NotEqual(t, s.value, tokens[i], s.class)
	}
	defer func() {
		// The audit chain's checkpoints are signed by the Vault Transit ed25519 key.
		require.Eventually(t, func() bool {
			res, err := r.audit().VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
			return err == nil && res.Ok && res.CheckpointsChecked > 0
		}, 15*time.Second, 200*time.Millisecond, "a Vault-signed checkpoint verifies")
		rows := pgtest.Count(t, e.dbURL, "SELECT count(*) FROM audit_checkpoints WHERE signature LIKE 'vault:v1:%'")
		assert.Positive(t, rows)
	}()

	// Detokenize every token over REST.
	var items []map[string]string
	for i, s := range samples {
		items = append(items, map[string]string{"class": s.class, "token": tokens[i], "reference": fmt.Sprint(i)})
	}
	body, _ := json.Marshal(map[string]any{"purpose_of_use": "TREAT", "items": items})
	code, _, raw := r.rest(t, "/v1/detokenize", string(body))
	require.Equal(t, http.StatusOK, code, raw)
	var out tokenizerv1.DetokenizeResponse
	require.NoError(t, jsonpbUnmarshal(raw, &out))
	for i, s := range samples {
		assert.Equal(t, s.value, out.Results[i].Value, s.class)
	}

	// Static classes give the same tokens again, and the FF1 class is consistent
	// without a lookup; the dynamic class gives new ones.
	again := tokenizeAll(t, r, "")
	for i, s := range samples {
		if s.class == "ssn_dynamic" {
			assert.NotEqual(t, tokens[i], again[i], s.class)
		} else {
			assert.Equal(t, tokens[i], again[i], s.class)
		}
	}
	// Another scope gives unrelated tokens.
	scoped := tokenizeAll(t, r, "study-42")
	for i, s := range samples {
		assert.NotEqual(t, tokens[i], scoped[i], s.class)
	}
	// An SSN sent in another shape is the same value: same token, in the new shape.
	resp, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "123456789"}}})
	require.NoError(t, err)
	assert.Equal(t, strings.ReplaceAll(tokens[0], "-", ""), resp.Results[0].Token)
	// A token presented in another shape detokenizes too.
	dresp, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: strings.ReplaceAll(tokens[0], "-", "")}}})
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", dresp.Results[0].Value)
}

func jsonpbUnmarshal(raw string, m *tokenizerv1.DetokenizeResponse) error {
	var probe struct {
		Results []struct {
			Reference, Value string
			Error            *struct{ Code int32 }
		}
	}
	if err := json.Unmarshal([]byte(raw), &probe); err != nil {
		return err
	}
	for _, r := range probe.Results {
		m.Results = append(m.Results, &tokenizerv1.DetokenizeResult{Reference: r.Reference, Value: r.Value})
	}
	return nil
}

func TestBadInputPerFormat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	bad := map[string][]string{
		"ssn":         {"123-45-678", "123-45-67890", "000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "abc-de-fghi"},
		"phone":       {"555-1234", "(115) 555-0100", "(415) 155-0100", "(495) 555-0100", "415-555-O100", "2 415 555 0100"},
		"email":       {"no-at-sign.org", "a@b", "a@@b.org", "@example.org", "a b@example.org"},
		"name":        {"R2-D2", "", "Ann\tLee"},
		"date":        {"2023-02-29", "1999-13-01", "1999-00-10", "19990101", "2300-01-01", "0000-01-01"},
		"npi":         {"1234567890", "123456789", "3234567890"},
		"credit_card": {"4111 1111 1111 1112", "411111111111", "4111-1111-1111-111a"},
		"mrn":         {"MRN-1234567", "MRX-12345678", "mrn-12345678"},
	}
	req := &tokenizerv1.TokenizeRequest{}
	var classes, values []string
	for class, vs := range bad {
		for _, v := range vs {
			req.Items = append(req.Items, &tokenizerv1.TokenizeItem{Class: class, Value: v})
			classes = append(classes, class)
			values = append(values, v)
		}
	}
	resp, err := r.tokenizer().Tokenize(t.Context(), req)
	require.NoError(t, err)
	for i, res := range resp.Results {
		require.NotNil(t, res.Error, "%s value #%d was accepted", classes[i], i)
		assert.Equal(t, int32(codes.InvalidArgument), res.Error.Code)
		assert.Contains(t, res.Error.Message, "class "+classes[i])
		if len(values[i]) > 3 {
			assert.NotContains(t, res.Error.Message, values[i])
		}
	}
	// Tokens of the wrong shape for their class are refused the same way on detokenize.
	dresp, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "ssn", Token: "123-45-6789"}, // a real SSN is never an ssn token
		{Class: "date", Token: "2023-02-30"},
		{Class: "npi", Token: "1234567893"},
	}})
	require.NoError(t, err)
	for _, res := range dresp.Results {
		assert.Equal(t, int32(codes.InvalidArgument), res.Error.GetCode())
	}
}

func TestExpiredAndDeletedTokensAreNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	ctx := t.Context()
	resp, err := r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Ttl: durationpb.New(time.Second), Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "321-54-6789"}, {Class: "ssn_dynamic", Value: "321-54-6789"},
	}})
	require.NoError(t, err)
	require.NotNil(t, resp.Results[0].ExpireTime)
	keep, err := r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "mrn", Value: "MRN-77770000"}}})
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond)

	out, err := r.tokenizer().Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "ssn", Token: resp.Results[0].Token}, {Class: "ssn_dynamic", Token: resp.Results[1].Token},
		{Class: "mrn", Token: keep.Results[0].Token},
	}})
	require.NoError(t, err)
	assert.Equal(t, int32(codes.NotFound), out.Results[0].Error.GetCode())
	assert.Equal(t, int32(codes.NotFound), out.Results[1].Error.GetCode())
	assert.Equal(t, "MRN-77770000", out.Results[2].Value, "unexpired tokens are unaffected")

	// The expired static value can be tokenized again, and the new token works.
	fresh, err := r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "321-54-6789"}}})
	require.NoError(t, err)
	require.Nil(t, fresh.Results[0].Error)
	out, err = r.tokenizer().Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: fresh.Results[0].Token}}})
	require.NoError(t, err)
	assert.Equal(t, "321-54-6789", out.Results[0].Value)

	// Deleted by token, then by value: both gone.
	del, err := r.tokenizer().DeleteTokens(ctx, &tokenizerv1.DeleteTokensRequest{Items: []*tokenizerv1.DeleteItem{
		{Class: "ssn", Token: fresh.Results[0].Token}, {Class: "mrn", Value: "MRN-77770000"},
	}})
	require.NoError(t, err)
	assert.True(t, del.Results[0].Deleted)
	assert.True(t, del.Results[1].Deleted)
	out, err = r.tokenizer().Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "ssn", Token: fresh.Results[0].Token}, {Class: "mrn", Token: keep.Results[0].Token},
	}})
	require.NoError(t, err)
	for _, res := range out.Results {
		assert.Equal(t, int32(codes.NotFound), res.Error.GetCode())
	}
}

func TestKeyRotationReencryptionAndKEKRewrap(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	e := newEnv(t)
	e.vaultAddr = v.Addr
	r := e.start(t, true)
	ctx := t.Context()
	v1Tokens := tokenizeAll(t, r, "")

	// An operator rotates the value-encryption key, as `tokenizer keys rotate` does.
	vc, err := vault.New(vault.Config{Address: v.Addr, Token: vaulttest.RootToken}, quietLog())
	require.NoError(t, err)
	defer vc.Close()
	st, err := store.Open(ctx, e.dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	defer st.Close()
	kr := keys.NewKeyring(vault.NewProvider(vc), st)
	require.NoError(t, kr.Reload(ctx))
	ver, err := kr.Rotate(ctx, keys.ValueEncryption)
	require.NoError(t, err)
	require.Equal(t, 2, ver)

	// The running service picks the new version up (reload interval 200 ms); new
	// tokens are encrypted under v2.
	require.Eventually(t, func() bool {
		resp, err := r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn_dynamic", Value: "555-12-3456"}}})
		require.NoError(t, err)
		counts, err := st.CountByKeyVersion(ctx)
		require.NoError(t, err)
		return counts[2] > 0 && resp.Results[0].Error == nil
	}, 10*time.Second, 100*time.Millisecond)
	detokenizeAll(t, r, v1Tokens)

	// Re-encryption moves every row to v2; everything still reads.
	cc := config.DefaultClasses()
	var compiled []*tokenizer.Class
	for _, c := range cc {
		cl, err := tokenizer.Compile(c)
		require.NoError(t, err)
		compiled = append(compiled, cl)
	}
	require.NoError(t, kr.Ensure(ctx, tokenizer.KeyPurposes(compiled)...))
	eng, err := tokenizer.New(compiled, st, kr, tokenizer.Limits{})
	require.NoError(t, err)
	total := 0
	for {
		n, err := eng.Reencrypt(ctx, st, 5)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		total += n
	}
	assert.Positive(t, total)
	counts, err := st.CountByKeyVersion(ctx)
	require.NoError(t, err)
	assert.Zero(t, counts[1], "no row left under v1")
	detokenizeAll(t, r, v1Tokens)

	// The KEK rotates in Vault; stored data keys are rewrapped; once Vault stops
	// decrypting under the old KEK version, a restarted service still reads everything.
	v.RotateKEK(t)
	n, err := kr.RewrapAll(ctx)
	require.NoError(t, err)
	assert.Positive(t, n)
	v.Write(t, "transit/keys/"+vaulttest.KEK+"/config", map[string]any{"min_decryption_version": 2})
	r.stop(t)
	r2 := e.start(t, true)
	detokenizeAll(t, r2, v1Tokens)
	again := tokenizeAll(t, r2, "")
	for i, s := range samples {
		if s.class != "ssn_dynamic" {
			assert.Equal(t, v1Tokens[i], again[i], "%s: static tokens survive rotation", s.class)
		}
	}
}

func detokenizeAll(t *testing.T, r *running, tokens []string) {
	t.Helper()
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT"}
	for i, s := range samples {
		req.Items = append(req.Items, &tokenizerv1.DetokenizeItem{Class: s.class, Token: tokens[i]})
	}
	out, err := r.tokenizer().Detokenize(t.Context(), req)
	require.NoError(t, err)
	for i, s := range samples {
		assert.Equal(t, s.value, out.Results[i].Value, s.class)
	}
}

func TestVaultOutage(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	proxy := netproxy.New(t, strings.TrimPrefix(v.Addr, "http://"))
	e := newEnv(t)
	e.vaultAddr = "http://" + proxy.Addr()
	r := e.start(t, true)
	tok, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "111-22-3333"}}})
	require.NoError(t, err)

	proxy.Down()
	// Within a check interval every request fails closed, promptly.
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := r.tokenizer().Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}})
		return status.Code(err) == codes.Unavailable
	}, 10*time.Second, 50*time.Millisecond)
	_, err = r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "111-22-3333"}}})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, http.StatusServiceUnavailable, r.readyz())

	proxy.Up()
	require.Eventually(t, func() bool { return r.readyz() == http.StatusOK }, 15*time.Second, 100*time.Millisecond)
	out, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}})
	require.NoError(t, err)
	assert.Equal(t, "111-22-3333", out.Results[0].Value)
}

func TestStartWhileVaultDown(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	proxy := netproxy.New(t, strings.TrimPrefix(v.Addr, "http://"))
	proxy.Down()
	e := newEnv(t)
	e.vaultAddr = "http://" + proxy.Addr()
	r := e.start(t, false)
	time.Sleep(time.Second)
	assert.Equal(t, http.StatusServiceUnavailable, r.readyz())
	_, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "111-22-3333"}}})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	proxy.Up()
	require.Eventually(t, func() bool { return r.readyz() == http.StatusOK }, 20*time.Second, 100*time.Millisecond)
	tokenizeAll(t, r, "")
}

func TestDumpHoldsNoValueOrToken(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	e := newEnv(t)
	e.vaultAddr = v.Addr
	r := e.start(t, true)
	tokens := tokenizeAll(t, r, "")
	dump := pgtest.Dump(t, e.dbURL)
	require.Contains(t, dump, "ssn_fpe", "the dump has the rows")
	digits := regexp.MustCompile(`\D`)
	for i, s := range samples {
		for _, needle := range []string{s.value, tokens[i], strings.ToLower(s.value)} {
			assert.NotContains(t, dump, needle, "%s", s.class)
		}
		if d := digits.ReplaceAllString(s.value, ""); len(d) >= 8 {
			assert.NotContains(t, dump, d, "%s digits of value", s.class)
		}
		if d := digits.ReplaceAllString(tokens[i], ""); len(d) >= 8 {
			assert.NotContains(t, dump, d, "%s digits of token", s.class)
		}
	}
}

func TestStaticTokenUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.start(t, true)
	b := e.start(t, true)
	const clients = 32
	var wg sync.WaitGroup
	tokens := make([]string, clients)
	errs := make([]error, clients)
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			srv := a
			if i%2 == 1 {
				srv = b
			}
			<-start
			resp, err := srv.tokenizer().Tokenize(context.Background(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "789-01-2345"}, {Class: "name", Value: "Ada Lovelace"}}})
			if err == nil && resp.Results[0].Error != nil {
				err = fmt.Errorf("item error %v", resp.Results[0].Error)
			}
			errs[i] = err
			if err == nil {
				tokens[i] = resp.Results[0].Token + "|" + resp.Results[1].Token
			}
		}(i)
	}
	close(start)
	wg.Wait()
	for i := range clients {
		require.NoError(t, errs[i])
		assert.Equal(t, tokens[0], tokens[i], "client %d", i)
	}
	assert.Equal(t, int64(2), pgtest.Count(t, e.dbURL, "SELECT count(*) FROM tokens"), "exactly one row per value")
}

func TestTokenSpaceExhaustion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.classes = []tokenizer.ClassConfig{{Name: "tiny", Format: "99", Mode: tokenizer.Dynamic}}
	r := e.start(t, true)
	exhausted := 0
	for range 6 {
		req := &tokenizerv1.TokenizeRequest{}
		for range 40 {
			req.Items = append(req.Items, &tokenizerv1.TokenizeItem{Class: "tiny", Value: "42"})
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		resp, err := r.tokenizer().Tokenize(ctx, req)
		cancel()
		require.NoError(t, err, "a full class answers, it does not hang")
		for _, res := range resp.Results {
			if res.Error != nil {
				require.Equal(t, int32(codes.ResourceExhausted), res.Error.Code)
				assert.Contains(t, res.Error.Message, "token space is nearly full")
				exhausted++
			}
		}
	}
	assert.Positive(t, exhausted, "240 tokens cannot fit a space of 99")
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
