package grpcx

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// LenientCodec is the servers' protobuf codec. It differs from gRPC's default in one
// way: a request whose string fields hold invalid UTF-8 (which proto3 refuses, so gRPC
// would answer INTERNAL before any interceptor ran, unaudited) is decoded with each
// such field replaced by a single NUL byte, which the engine and the policy refuse as
// INVALID_ARGUMENT per item, and the audit step records. The bytes never reach a log.
type LenientCodec struct{}

func (LenientCodec) Name() string { return "proto" }

func (LenientCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a protobuf message", v)
	}
	return proto.Marshal(m)
}

func (LenientCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec: %T is not a protobuf message", v)
	}
	err := proto.Unmarshal(data, m)
	if err == nil {
		return nil
	}
	fixed, ok := replaceInvalidUTF8(data, m.ProtoReflect().Descriptor(), 0)
	if !ok {
		return err
	}
	proto.Reset(m)
	if proto.Unmarshal(fixed, m) != nil {
		return err
	}
	return nil
}

// replaceInvalidUTF8 rewrites the wire form of a message of type md, replacing every
// string field that is not valid UTF-8 by "\x00" (in nested messages too). ok is false
// when data is not well-formed.
func replaceInvalidUTF8(data []byte, md protoreflect.MessageDescriptor, depth int) ([]byte, bool) {
	if depth > 32 {
		return nil, false
	}
	out := make([]byte, 0, len(data))
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return nil, false
		}
		tag := data[:n]
		data = data[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, data)
			if m < 0 {
				return nil, false
			}
			out = append(append(out, tag...), data[:m]...)
			data = data[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(data)
		if m < 0 {
			return nil, false
		}
		data = data[m:]
		if fd := md.Fields().ByNumber(num); fd != nil {
			switch {
			case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
				v = []byte{0}
			case fd.Kind() == protoreflect.MessageKind:
				var ok bool
				if v, ok = replaceInvalidUTF8(v, fd.Message(), depth+1); !ok {
					return nil, false
				}
			}
		}
		out = protowire.AppendBytes(append(out, tag...), v)
	}
	return out, true
}
