package server_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/store"
)

func (r *running) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.addrs.Admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
	require.NotNil(t, m, "metric %s", name)
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return v
}

func revealOne(t *testing.T, r *running, class, token string) (string, codes.Code) {
	t.Helper()
	resp, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT",
		Items: []*tokenizerv1.DetokenizeItem{{Class: class, Token: token}}})
	require.NoError(t, err)
	if e := resp.Results[0].Error; e != nil {
		return "", codes.Code(e.Code)
	}
	return resp.Results[0].Value, codes.OK
}

// TestCacheInvalidationAcrossReplicas: replica B answers a token from its cache; a
// delete on replica A, a token's expiry and a published flush (re-encryption) reach B
// within the stated bound (here well under a second; the entry lifetime, 30 s by
// default, bounds it when the feed itself fails).
func TestCacheInvalidationAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.start(t, true), e.start(t, true)
	tok, err := a.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "123-45-6789"}, {Class: "ssn_dynamic", Value: "234-56-7890"}}})
	require.NoError(t, err)
	static, dynamic := tok.Results[0].Token, tok.Results[1].Token
	for range 2 {
		v, code := revealOne(t, b, "ssn", static)
		require.Equal(t, codes.OK, code)
		require.Equal(t, "123-45-6789", v)
		_, code = revealOne(t, b, "ssn_dynamic", dynamic)
		require.Equal(t, codes.OK, code)
	}
	require.Positive(t, b.metric(t, "tokenizer_cache_hits_total"), "B answers from its cache")

	deleted := time.Now()
	del, err := a.tokenizer().DeleteTokens(t.Context(), &tokenizerv1.DeleteTokensRequest{Items: []*tokenizerv1.DeleteItem{{Class: "ssn", Token: static}}})
	require.NoError(t, err)
	require.True(t, del.Results[0].Deleted)
	require.Eventually(t, func() bool { _, code := revealOne(t, b, "ssn", static); return code == codes.NotFound }, 2*time.Second, 10*time.Millisecond)
	t.Logf("delete on A reached B's cache within %v", time.Since(deleted).Round(time.Millisecond))

	short, err := a.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Ttl: durationpb.New(time.Second),
		Items: []*tokenizerv1.TokenizeItem{{Class: "mrn", Value: "MRN-00000077"}}})
	require.NoError(t, err)
	_, code := revealOne(t, b, "mrn", short.Results[0].Token)
	require.Equal(t, codes.OK, code)
	time.Sleep(1100 * time.Millisecond)
	_, code = revealOne(t, b, "mrn", short.Results[0].Token)
	assert.Equal(t, codes.NotFound, code, "an expired token is not answered from the cache")

	st, err := store.Open(t.Context(), e.dbURL, store.Options{MaxConns: 1})
	require.NoError(t, err)
	defer st.Close()
	require.Positive(t, b.metric(t, "tokenizer_cache_entries"))
	require.NoError(t, st.PublishFlush(t.Context()))
	require.Eventually(t, func() bool { return b.metric(t, "tokenizer_cache_entries") == 0 }, 2*time.Second, 10*time.Millisecond,
		"a flush (re-encryption, erasure) empties every replica's cache")
}
