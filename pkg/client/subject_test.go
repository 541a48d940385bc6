package client_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/pkg/client"
)

// TestSubjectIsSent tokenizes one value for two patients: each subject has its own key,
// so a static class gives two tokens, and both reveal the value.
func TestSubjectIsSent(t *testing.T) {
	t.Parallel()
	c := newDevClient(t)
	res, err := c.Tokenize(t.Context(), []client.Value{
		{Class: "ssn", Value: "123-45-6789", Subject: "MRN-00000101"},
		{Class: "ssn", Value: "123-45-6789", Subject: "MRN-00000102"},
		{Class: "ssn", Value: "123-45-6789", Subject: "MRN-00000101"},
	})
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	assert.NotEqual(t, res[0].Token, res[1].Token, "one value, two patients, two tokens")
	assert.Equal(t, res[0].Token, res[2].Token, "the same patient gets the same static token")
	vals, err := c.Detokenize(t.Context(), client.Treatment, []client.Token{{Class: "ssn", Token: res[0].Token}, {Class: "ssn", Token: res[1].Token}})
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", vals[0].Value)
	assert.Equal(t, "123-45-6789", vals[1].Value)
}
