package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// streamWindow is how many batches may be in flight on a stream before sending waits
// for responses.
const streamWindow = 16

// TokenizeAll tokenizes every value of values over one TokenizeStream, in batches of
// MaxItems, and calls fn with each result in input order. It is for pipelines whose
// input does not fit in memory. values is iterated on another goroutine. Streams are
// not retried and WithTimeout does not apply (ctx bounds the stream): on an error, fn
// has seen the results of a prefix of the input.
func (c *Client) TokenizeAll(ctx context.Context, values iter.Seq[Value], fn func(TokenizeResult) error, opts ...TokenizeOption) error {
	open := func(ctx context.Context) (grpc.BidiStreamingClient[tokenizerv1.TokenizeRequest, tokenizerv1.TokenizeResponse], error) {
		return c.tok.TokenizeStream(ctx)
	}
	build := func(chunk []Value) *tokenizerv1.TokenizeRequest { return tokenizeRequest(chunk, opts) }
	return streamAll(ctx, c, values, open, build, tokenizeResults, fn)
}

// DetokenizeAll reveals every token of tokens over one DetokenizeStream, for purpose,
// and calls fn with each result in input order; as TokenizeAll otherwise. The purpose
// is required and checked before the stream opens.
func (c *Client) DetokenizeAll(ctx context.Context, purpose Purpose, tokens iter.Seq[Token], fn func(DetokenizeResult) error, opts ...RevealOption) error {
	base, err := detokenizeRequest(purpose, nil, opts)
	if err != nil {
		return err
	}
	open := func(ctx context.Context) (grpc.BidiStreamingClient[tokenizerv1.DetokenizeRequest, tokenizerv1.DetokenizeResponse], error) {
		return c.tok.DetokenizeStream(ctx)
	}
	build := func(chunk []Token) *tokenizerv1.DetokenizeRequest { return detokenizeChunk(base, chunk) }
	return streamAll(ctx, c, tokens, open, build, detokenizeResults, fn)
}

// streamAll sends batches of in on a new stream from one goroutine while this one
// receives the responses (one per batch, in order) and hands their results to fn.
func streamAll[In, Req, Resp, Out any](
	ctx context.Context, c *Client, in iter.Seq[In],
	open func(context.Context) (grpc.BidiStreamingClient[Req, Resp], error),
	build func([]In) *Req, results func(*Resp, int) ([]Out, error), fn func(Out) error,
) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := open(ctx)
	if err != nil {
		return fmt.Errorf("client: open stream: %w", err)
	}
	sizes := make(chan int, streamWindow)
	sendErr := make(chan error, 1)
	go sendBatches(ctx, s, c.maxItems, in, build, sizes, sendErr)
	for n := range sizes {
		resp, err := s.Recv()
		if err != nil {
			return fmt.Errorf("client: stream: %w", err)
		}
		outs, err := results(resp, n)
		if err != nil {
			return fmt.Errorf("client: stream: %w", err)
		}
		for _, o := range outs {
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	select {
	case err := <-sendErr:
		return streamError(s, err)
	default:
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("a response without a request")
		}
		return fmt.Errorf("client: stream: %w", err)
	}
	return nil
}

// sendBatches sends in as batches of at most max items, reporting each batch's size on
// sizes after sending it, and closes the sending side at the end.
func sendBatches[In, Req, Resp any](ctx context.Context, s grpc.BidiStreamingClient[Req, Resp], max int,
	in iter.Seq[In], build func([]In) *Req, sizes chan<- int, sendErr chan<- error,
) {
	defer close(sizes)
	batch := make([]In, 0, max)
	flush := func() bool {
		if err := s.Send(build(batch)); err != nil {
			sendErr <- err
			return false
		}
		select {
		case sizes <- len(batch):
		case <-ctx.Done():
			return false
		}
		batch = batch[:0]
		return true
	}
	for v := range in {
		batch = append(batch, v)
		if len(batch) == max && !flush() {
			return
		}
	}
	if len(batch) > 0 && !flush() {
		return
	}
	if err := s.CloseSend(); err != nil {
		sendErr <- err
	}
}

// streamError returns the stream's own status when a send failed because the stream
// ended (Send then reports only io.EOF).
func streamError[Req, Resp any](s grpc.BidiStreamingClient[Req, Resp], sendErr error) error {
	if errors.Is(sendErr, io.EOF) {
		if _, err := s.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("client: stream: %w", err)
		}
	}
	return fmt.Errorf("client: stream send: %w", sendErr)
}
