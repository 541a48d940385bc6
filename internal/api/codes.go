package api

import (
	"errors"
	"io"

	"google.golang.org/grpc/codes"
)

// codeString names a google.rpc.Status code as gRPC's codes do (the items metric).
func codeString(code int32) string { return codes.Code(code).String() }

// endOfStream is the end of a stream: nil when the client closed it.
func endOfStream(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
