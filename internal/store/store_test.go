package store_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/store/storetest"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{MaxConns: 8})
		require.NoError(t, err)
		t.Cleanup(st.Close)
		_, err = st.Migrate(t.Context())
		require.NoError(t, err)
		return st
	})
}
