package api

import (
	"context"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/fhir"
)

// fhirService converts tokenizer.v1 FHIR messages; app.FHIR does the work.
type fhirService struct {
	tokenizerv1.UnimplementedFhirServiceServer
	h *Handlers
}

func (f *fhirService) ListProfiles(ctx context.Context, _ *tokenizerv1.ListProfilesRequest) (*tokenizerv1.ListProfilesResponse, error) {
	if err := requirePrincipal(ctx); err != nil {
		return nil, err
	}
	resp := &tokenizerv1.ListProfilesResponse{}
	for _, name := range f.h.App.FHIRRegistry.Names() {
		p, _ := f.h.App.FHIRRegistry.Lookup(name)
		resp.Profiles = append(resp.Profiles, &tokenizerv1.FhirProfile{Name: p.Name, Description: p.Description, Reversible: p.Reversible(), Classes: p.Classes()})
	}
	return resp, nil
}

func (f *fhirService) TokenizeResources(ctx context.Context, req *tokenizerv1.TokenizeResourcesRequest) (*tokenizerv1.ResourcesResponse, error) {
	return f.process(ctx, app.FHIRRequest{Profile: req.GetProfile()}, req.GetResources())
}

func (f *fhirService) DetokenizeResources(ctx context.Context, req *tokenizerv1.DetokenizeResourcesRequest) (*tokenizerv1.ResourcesResponse, error) {
	return f.process(ctx, app.FHIRRequest{Profile: req.GetProfile(), Reverse: true, Purpose: req.GetPurposeOfUse(), Justification: req.GetJustification()}, req.GetResources())
}

// The FHIR streams share one scope across their messages (fhir.WithStreamScope): a
// Bundle sent in parts, one message each, links as one Bundle does.
func (f *fhirService) TokenizeResourcesStream(stream tokenizerv1.FhirService_TokenizeResourcesStreamServer) error {
	return serveBatches(f.h, scoped[tokenizerv1.TokenizeResourcesRequest, tokenizerv1.ResourcesResponse](stream), "tokenize_resources_stream", f.TokenizeResources)
}

func (f *fhirService) DetokenizeResourcesStream(stream tokenizerv1.FhirService_DetokenizeResourcesStreamServer) error {
	return serveBatches(f.h, scoped[tokenizerv1.DetokenizeResourcesRequest, tokenizerv1.ResourcesResponse](stream), "detokenize_resources_stream", f.DetokenizeResources)
}

// scopedStream is a stream whose context carries a FHIR stream scope.
type scopedStream[Req, Resp any] struct {
	batchStream[Req, Resp]
	ctx context.Context
}

func (s scopedStream[Req, Resp]) Context() context.Context { return s.ctx }

func scoped[Req, Resp any](s batchStream[Req, Resp]) batchStream[Req, Resp] {
	return scopedStream[Req, Resp]{batchStream: s, ctx: fhir.WithStreamScope(s.Context())}
}

// process converts a request for app.ProcessFHIR and its outcome back.
func (f *fhirService) process(ctx context.Context, req app.FHIRRequest, in []string) (*tokenizerv1.ResourcesResponse, error) {
	raw := make([][]byte, len(in))
	for i, r := range in {
		raw[i] = []byte(r)
	}
	out, err := f.h.App.ProcessFHIR(ctx, req, raw)
	if err != nil {
		return nil, err
	}
	resp := &tokenizerv1.ResourcesResponse{Resources: make([]string, len(out.Resources))}
	for i, r := range out.Resources {
		resp.Resources[i] = string(r)
	}
	for _, e := range out.Errors {
		resp.Errors = append(resp.Errors, &tokenizerv1.ResourceError{Index: int32(e.Index), ResourceType: e.ResourceType, Path: e.Path, Reason: e.Reason})
	}
	for _, u := range out.Unrestored {
		resp.Unrestored = append(resp.Unrestored, &tokenizerv1.UnrestoredPath{Index: int32(u.Index), Path: u.Path, Reason: u.Reason})
	}
	return resp, nil
}
