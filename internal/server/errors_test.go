package server_test

import (
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// TestSerializationFailureIsAborted: a write that PostgreSQL refuses with a
// serialization failure (SQLSTATE 40001) reaches the caller as ABORTED (retry), over
// gRPC and REST (409), with no database text, and is audited as such.
func TestSerializationFailureIsAborted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	conn, err := pgx.Connect(t.Context(), e.dbURL)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	_, err = conn.Exec(t.Context(), `
		CREATE FUNCTION force_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'forced serialization failure' USING ERRCODE = '40001'; END $$;
		CREATE TRIGGER force_conflict BEFORE INSERT ON tokens FOR EACH ROW EXECUTE FUNCTION force_conflict();`)
	require.NoError(t, err)

	_, err = r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}})
	require.Error(t, err)
	assert.Equal(t, codes.Aborted, status.Code(err), "%v", err)
	assert.NotContains(t, status.Convert(err).Message(), "forced")

	code, _, raw := r.rest(t, "/v1/tokenize", `{"items":[{"class":"ssn_dynamic","value":"123-45-6789"}]}`)
	assert.Equal(t, http.StatusConflict, code, raw)

	var outcome string
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT body::json->>'outcome' FROM audit_events WHERE operation = 'tokenize' ORDER BY seq DESC LIMIT 1`).Scan(&outcome))
	assert.Equal(t, "ABORTED", outcome)
}
