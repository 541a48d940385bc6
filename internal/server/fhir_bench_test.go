package server_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// Synthea-sized resources: a Patient with identifiers, name, telecom, address and US Core
// extensions (~1.6 KB), and a vital-sign Observation that references it (~0.7 KB).
func syntheaPatient(i int) string {
	return fmt.Sprintf(`{"resourceType":"Patient","id":"%08x-1111-4222-8333-%012x",
"meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":"Maiden%d"},
 {"url":"http://hl7.org/fhir/StructureDefinition/patient-birthPlace","valueAddress":{"city":"Boston","state":"MA","country":"US"}}],
"identifier":[{"system":"https://github.com/synthetichealth/synthea","value":"%08x-aaaa-4bbb-8ccc-%012x"},
 {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"http://hospital.smarthealthit.org","value":"MRN-%08d"},
 {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]},"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-%02d-%04d"},
 {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"DL"}]},"system":"urn:oid:2.16.840.1.113883.4.3.25","value":"S%08d"}],
"name":[{"use":"official","family":"Family%d","given":["Given%d","Middle%d"],"prefix":["Mr."]}],
"telecom":[{"system":"phone","value":"555-%03d-%04d","use":"home"}],
"gender":"male","birthDate":"19%02d-%02d-%02d",
"address":[{"line":["%d Main Street"],"city":"Springfield","state":"MA","postalCode":"01%03d","country":"US"}],
"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]},
"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"en-US"}]}}]}`,
		i, i, i, i, i, i, i%100, i%10000, i, i, i, i, i%1000, i%10000, 30+i%60, 1+i%12, 1+i%28, i, i%1000)
}

func syntheaObservation(i int) string {
	return fmt.Sprintf(`{"resourceType":"Observation","id":"%08x-2222-4333-8444-%012x","status":"final",
"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
"code":{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body Height"}]},
"subject":{"reference":"Patient/%08x-1111-4222-8333-%012x"},
"effectiveDateTime":"2019-%02d-%02dT10:%02d:00-05:00","issued":"2019-%02d-%02dT10:%02d:00.123-05:00",
"valueQuantity":{"value":%d.5,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}}`,
		i, i, i%1000, i%1000, 1+i%12, 1+i%28, i%60, 1+i%12, 1+i%28, i%60, 150+i%40)
}

// BenchmarkFHIRStream: resources per second through TokenizeResourcesStream with the
// real engine, PostgreSQL and the audit log (one event per 256-resource message), over
// one stream and over four concurrent streams. Patient: every patient new (a subject,
// its key and its date shift are created; keys in the local provider's files);
// Patient_vault: the same with the Vault key provider (a dev server: Transit and KV);
// Patient_seen: the same 2,560 patients again; Observation: references to 1,000
// patients.
//
//	go test -run '^$' -bench FHIRStream -benchtime 40x ./internal/server/
func BenchmarkFHIRStream(b *testing.B) {
	const batch, seen = 256, 2560
	for _, kind := range []struct {
		name  string
		make  func(int) string
		warm  bool
		vault bool
	}{
		{"Patient", syntheaPatient, false, false},
		{"Patient_vault", syntheaPatient, false, true},
		{"Patient_seen", func(i int) string { return syntheaPatient(i % seen) }, true, false},
		{"Observation", syntheaObservation, false, false},
	} {
		for _, streams := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/streams=%d", kind.name, streams), func(b *testing.B) {
				e := newEnv(b)
				if kind.vault { // subject keys in Vault (KV) instead of the local key files
					e.vaultAddr = vaulttest.Start(b).Addr
				}
				r := e.start(b, true)
				fc := tokenizerv1.NewFhirServiceClient(r.conn)
				if kind.warm {
					fhirBenchSend(b, fc, 1, seen/batch, batch, kind.make)
				}
				b.ResetTimer()
				start := time.Now()
				fhirBenchSend(b, fc, streams, b.N, batch, kind.make)
				b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "resources/s")
			})
		}
	}
}

// fhirBenchSend sends messages of batch resources over streams concurrent streams, n
// messages in all, resource numbers counting up from 0.
func fhirBenchSend(b *testing.B, fc tokenizerv1.FhirServiceClient, streams, n, batch int, mk func(int) string) {
	var next atomic.Int64
	var sent atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, streams)
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, err := fc.TokenizeResourcesStream(b.Context())
			if err != nil {
				errc <- err
				return
			}
			defer stream.CloseSend() //nolint:errcheck // end of the benchmark's stream
			for sent.Add(1) <= int64(n) {
				req := &tokenizerv1.TokenizeResourcesRequest{Profile: "limited_data_set", Resources: make([]string, batch)}
				first := int(next.Add(int64(batch))) - batch
				for k := range batch {
					req.Resources[k] = mk(first + k)
				}
				if err := stream.Send(req); err != nil {
					errc <- err
					return
				}
				resp, err := stream.Recv()
				if err != nil {
					errc <- err
					return
				}
				if len(resp.Errors) > 0 {
					errc <- fmt.Errorf("%d resources failed, first: %s", len(resp.Errors), resp.Errors[0].Reason)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
