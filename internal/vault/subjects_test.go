package vault_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
	"github.com/phivault/tokenizer/internal/vault"
)

func TestSubjectKeysInKV(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	v.ServicePolicy(t)
	token := childToken(t, v, "tokenizer") // the documented service policy is enough
	p := vault.NewProvider(newClient(t, v.Addr, func(c *vault.Config) { c.Token = token }))
	s := vault.NewSubjects(p, "secret", "tokenizer/subjects")
	ctx := t.Context()

	ref := keys.NewSubjectRef()
	k, err := s.NewSubjectKey(ctx, ref)
	require.NoError(t, err)
	require.Len(t, k, keys.DataKeySize)
	_, err = s.NewSubjectKey(ctx, ref)
	assert.Error(t, err, "check-and-set: a stored key is never overwritten")
	got, err := s.SubjectKey(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, k, got)

	// KV holds only the Transit-wrapped key, never the key itself.
	sec, err := v.Client.Logical().Read("secret/data/tokenizer/subjects/" + ref)
	require.NoError(t, err)
	wrapped := sec.Data["data"].(map[string]any)["wrapped"].(string)
	assert.Regexp(t, `^vault:v\d+:`, wrapped)

	require.NoError(t, s.DestroySubjectKey(ctx, ref))
	_, err = s.SubjectKey(ctx, ref)
	assert.ErrorIs(t, err, keys.ErrSubjectKeyGone)
	meta, err := v.Client.Logical().Read("secret/metadata/tokenizer/subjects/" + ref)
	require.NoError(t, err)
	assert.Nil(t, meta, "every version is destroyed with the metadata")
	assert.NoError(t, s.DestroySubjectKey(ctx, ref), "destroying twice succeeds")
	_, err = s.SubjectKey(ctx, "../../transit/keys/x")
	assert.ErrorContains(t, err, "malformed")

	// The checkpoint signing key's public key verifies a Transit signature offline.
	msg := []byte("checkpoint")
	sig, err := p.Sign(ctx, msg)
	require.NoError(t, err)
	pub, err := p.PublicKey(ctx, sig)
	require.NoError(t, err)
	assert.True(t, ed25519.Verify(pub, msg, mustSig(t, sig)))
}

func mustSig(t *testing.T, sig string) []byte {
	t.Helper()
	parts := strings.SplitN(sig, ":", 3)
	require.Len(t, parts, 3)
	b, err := base64.StdEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	return b
}
