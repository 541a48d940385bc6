package bulk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// FormatFHIRNDJSON is FHIR Bulk Data NDJSON (one resource per line) de-identified or
// re-identified whole by a profile (docs/fhir.md) through the service's FhirService:
// each line is one value of the request, the profile stands where a class would.
const FormatFHIRNDJSON = "fhir-ndjson"

// fhirNDJSONFormat reads lines like ndjsonFormat; a line's value is the resource
// itself, without its line end, and its result replaces it.
type fhirNDJSONFormat struct {
	ndjsonFormat
	profile string
}

func newFHIRNDJSON(j *Job) (Format, error) { return &fhirNDJSONFormat{profile: j.Profile}, nil }

// Fields makes the line, without its terminator, the one value of the record. Blank
// lines have none and are written as they are. Whether the line is a FHIR resource is
// the service's to say (a bad line fails alone and becomes a reject).
func (f *fhirNDJSONFormat) Fields(raw []byte) ([]Field, error) {
	end := len(raw)
	for end > 0 && (raw[end-1] == '\n' || raw[end-1] == '\r') {
		end--
	}
	if len(bytes.TrimSpace(raw[:end])) == 0 {
		return nil, nil
	}
	return []Field{{Start: 0, End: end, Column: "resource", Class: f.profile, Value: string(raw[:end])}}, nil
}

// Encode writes the resulting resource as it came from the service (one line of JSON).
func (f *fhirNDJSONFormat) Encode(dst []byte, _ Field, value string) []byte {
	return append(dst, value...)
}

// sendFHIR de-identifies or re-identifies items (one resource each) in one request.
// A resource the service could not process rejects its record with the path and the
// reason the service gives (never a value).
func (r *run) sendFHIR(ctx context.Context, items []Field, out []string, errs []error) error {
	c := r.opts.FHIR
	if c == nil {
		return errors.New("no FHIR client configured")
	}
	resources := make([]string, len(items))
	for i, f := range items {
		resources[i] = f.Value
	}
	var resp *tokenizerv1.ResourcesResponse
	var err error
	if r.job.Operation == Tokenize {
		resp, err = c.TokenizeResources(ctx, &tokenizerv1.TokenizeResourcesRequest{Profile: r.job.Profile, Resources: resources})
	} else {
		resp, err = c.DetokenizeResources(ctx, &tokenizerv1.DetokenizeResourcesRequest{Profile: r.job.Profile, Resources: resources,
			PurposeOfUse: r.job.Purpose, Justification: r.job.Justification})
	}
	if tooLarge(err) {
		// One resource (or the batch) is over the service's message limit: the
		// resources go one by one, and the one too large is a reject.
		if len(items) == 1 {
			errs[0] = &RowError{Column: "resource", Reason: "the resource is larger than the service's message limit"}
			return nil
		}
		for i := range items {
			if err := r.sendFHIR(ctx, items[i:i+1], out[i:i+1], errs[i:i+1]); err != nil {
				return err
			}
		}
		return nil
	}
	if err != nil {
		return err
	}
	if len(resp.GetResources()) != len(items) {
		return errors.New("the service returned a different number of resources")
	}
	copy(out, resp.GetResources())
	for _, e := range resp.GetErrors() {
		i := int(e.GetIndex())
		if i < 0 || i >= len(items) {
			return fmt.Errorf("the service reported an error for resource %d of %d", i, len(items))
		}
		column := e.GetPath()
		if column == "" {
			column = e.GetResourceType()
		}
		if column == "" {
			column = "resource"
		}
		if errs[i] == nil {
			errs[i] = &RowError{Column: column, Reason: e.GetReason()}
		}
	}
	for i := range items {
		if errs[i] == nil && out[i] == "" {
			errs[i] = &RowError{Column: "resource", Reason: "the service returned no resource"}
		}
	}
	return nil
}

// fhirBatchItems is the default number of resources per request: a Synthea Patient is a
// few KiB, so 100 keep a request well under the service's message limit.
const fhirBatchItems = 100

// tooLarge tells a message over gRPC's size limit (either side) from other
// RESOURCE_EXHAUSTED answers, such as a rate limit, which are retried.
func tooLarge(err error) bool {
	st := status.Convert(err)
	return st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max")
}
