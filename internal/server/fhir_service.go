package server

import (
	"bytes"
	"context"
	"encoding/json"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/fhir"
	"github.com/phivault/tokenizer/internal/policy"
)

// fhirService converts tokenizer.v1 FHIR messages; app.FHIR does the work.
type fhirService struct {
	tokenizerv1.UnimplementedFhirServiceServer
	s *Server
}

func (f *fhirService) ListProfiles(ctx context.Context, _ *tokenizerv1.ListProfilesRequest) (*tokenizerv1.ListProfilesResponse, error) {
	if policy.PrincipalFrom(ctx) == nil {
		return nil, errs.New(errs.PermissionDenied, "caller %s has no entry in the policy", callerID(ctx))
	}
	resp := &tokenizerv1.ListProfilesResponse{}
	for _, name := range f.s.app.FHIRRegistry.Names() {
		p, _ := f.s.app.FHIRRegistry.Lookup(name)
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

func (f *fhirService) TokenizeResourcesStream(stream tokenizerv1.FhirService_TokenizeResourcesStreamServer) error {
	return serveBatches(f.s, stream, "tokenize_resources_stream", f.TokenizeResources)
}

func (f *fhirService) DetokenizeResourcesStream(stream tokenizerv1.FhirService_DetokenizeResourcesStreamServer) error {
	return serveBatches(f.s, stream, "detokenize_resources_stream", f.DetokenizeResources)
}

// process runs the resources through the request's processor: lone resources in one
// batch, each Bundle streamed entry by entry; a resource that fails fails alone.
func (f *fhirService) process(ctx context.Context, req app.FHIRRequest, in []string) (*tokenizerv1.ResourcesResponse, error) {
	if len(in) == 0 {
		return nil, errs.New(errs.InvalidArgument, "resources: at least one is required")
	}
	p, err := f.s.app.FHIR(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := &tokenizerv1.ResourcesResponse{Resources: make([]string, len(in))}
	var lone [][]byte
	var at []int
	for i, r := range in {
		if !isBundle(r) {
			lone, at = append(lone, []byte(r)), append(at, i)
			continue
		}
		var out bytes.Buffer
		rep, err := runOne(ctx, p, req.Reverse, r, &out)
		if errs.KindOf(err) == errs.InvalidArgument {
			resp.Errors = append(resp.Errors, &tokenizerv1.ResourceError{Index: int32(i), ResourceType: "Bundle", Reason: err.Error()})
			continue
		}
		if err != nil {
			return nil, err
		}
		resp.Resources[i] = out.String()
		f.report(ctx, resp, rep, func(int) int { return i })
	}
	if len(lone) > 0 {
		out, rep, err := p.Resources(ctx, lone, req.Reverse)
		if err != nil {
			return nil, err
		}
		for k, b := range out {
			resp.Resources[at[k]] = string(b)
		}
		f.report(ctx, resp, rep, func(k int) int { return at[k] })
	}
	return resp, nil
}

func runOne(ctx context.Context, p *fhir.Processor, reverse bool, r string, w *bytes.Buffer) (*fhir.Report, error) {
	if reverse {
		return p.ReidentifyJSON(ctx, bytes.NewReader([]byte(r)), w)
	}
	return p.DeidentifyJSON(ctx, bytes.NewReader([]byte(r)), w)
}

// isBundle peeks at the resource type without trusting the rest of the document.
func isBundle(r string) bool {
	var probe struct {
		ResourceType string `json:"resourceType"`
	}
	return json.Unmarshal([]byte(r), &probe) == nil && probe.ResourceType == "Bundle"
}

// report adds a processor report to the response and the audit record; index maps the
// report's resource index to the request's.
func (f *fhirService) report(ctx context.Context, resp *tokenizerv1.ResourcesResponse, rep *fhir.Report, index func(int) int) {
	app.RecordFHIR(ctx, rep)
	for _, e := range rep.Errors {
		resp.Errors = append(resp.Errors, &tokenizerv1.ResourceError{Index: int32(index(e.Index)), ResourceType: e.ResourceType, Path: e.Path, Reason: e.Reason})
	}
	for _, u := range rep.Unrestored {
		resp.Unrestored = append(resp.Unrestored, &tokenizerv1.UnrestoredPath{Index: int32(index(u.Index)), Path: u.Path, Reason: u.Reason})
	}
}
