package api

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeTransport records the messages it is asked to handle; refuse fails them.
type fakeTransport struct {
	ops    []string
	refuse error
}

func (f *fakeTransport) Status(_ context.Context, err error) *spb.Status {
	return status.New(codes.InvalidArgument, err.Error()).Proto()
}

func (f *fakeTransport) Message(ctx context.Context, op string, handle func(context.Context) error) error {
	f.ops = append(f.ops, op)
	if f.refuse != nil {
		return f.refuse
	}
	return handle(ctx)
}

func (f *fakeTransport) IdleTimeout() time.Duration { return time.Second }

// fakeStream feeds ins and collects outs.
type fakeStream struct {
	ins  []int
	outs []int
	err  error // returned after the inputs instead of io.EOF
}

func (s *fakeStream) Context() context.Context { return context.Background() }
func (s *fakeStream) Recv() (*int, error) {
	if len(s.ins) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	v := s.ins[0]
	s.ins = s.ins[1:]
	return &v, nil
}
func (s *fakeStream) Send(v *int) error { s.outs = append(s.outs, *v); return nil }

func double(_ context.Context, v *int) (*int, error) { r := 2 * *v; return &r, nil }

func TestServeBatchesHandsEachMessageToTheTransport(t *testing.T) {
	t.Parallel()
	tr := &fakeTransport{}
	h := &Handlers{Transport: tr}
	st := &fakeStream{ins: []int{1, 2, 3}}
	require.NoError(t, serveBatches(h, st, "op_stream", double))
	assert.Equal(t, []int{2, 4, 6}, st.outs, "answers in order")
	assert.Equal(t, []string{"op_stream", "op_stream", "op_stream"}, tr.ops, "one request per message")

	refused := status.Error(codes.PermissionDenied, "no longer allowed")
	tr2 := &fakeTransport{refuse: refused}
	st2 := &fakeStream{ins: []int{1, 2}}
	err := serveBatches(&Handlers{Transport: tr2}, st2, "op_stream", double)
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "a refused message ends the stream with its status")
	assert.Empty(t, st2.outs)

	broken := errors.New("transport broke")
	err = serveBatches(h, &fakeStream{err: broken}, "op_stream", double)
	assert.ErrorIs(t, err, broken)
}

func TestItemStatusAndCodeNames(t *testing.T) {
	t.Parallel()
	h := &Handlers{Transport: &fakeTransport{}}
	assert.Nil(t, h.itemStatus(context.Background(), nil))
	st := h.itemStatus(context.Background(), errors.New("class ssn: value does not fit"))
	require.NotNil(t, st)
	assert.Equal(t, "InvalidArgument", codeString(st.GetCode()))
	assert.NoError(t, endOfStream(io.EOF))
	assert.Error(t, endOfStream(io.ErrUnexpectedEOF))
}
