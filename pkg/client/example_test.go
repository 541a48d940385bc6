package client_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log"
	"regexp"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/pkg/client"
)

// ssnToken is the shape of a distinguishable SSN token (area 9xx, never issued).
var ssnToken = regexp.MustCompile(`^9\d\d-\d\d-\d{4}$`)

func ExampleNew() {
	// In production: client.WithTLSFiles("client.crt", "client.key", "ca.pem"), or
	// client.WithSPIFFE(source, serverID). Plaintext is for a development server.
	c, err := client.New(devGRPC, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	classes, err := c.ListClasses(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range classes[:3] {
		fmt.Println(k.Name, k.Format, k.Mode)
	}
	// Output:
	// credit_card credit_card static
	// date date static
	// email email static
}

func ExampleClient_Tokenize() {
	c, err := client.New(devGRPC, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	results, err := c.Tokenize(context.Background(), []client.Value{
		{Class: "ssn", Value: "123-45-6789", Reference: "patient-1"},
		{Class: "ssn", Value: "not an SSN", Reference: "patient-2"},
	})
	if err != nil {
		log.Fatal(err) // the call failed as a whole (server unreachable, denied, ...)
	}
	for _, r := range results {
		if r.Err != nil {
			fmt.Println(r.Reference, "error:", status.Code(r.Err))
			continue
		}
		fmt.Println(r.Reference, "token shaped like an SSN:", ssnToken.MatchString(r.Token))
	}
	// Output:
	// patient-1 token shaped like an SSN: true
	// patient-2 error: InvalidArgument
}

func ExampleClient_Detokenize() {
	ctx := context.Background()
	c, err := client.New(devGRPC, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	tok, err := c.Tokenize(ctx, []client.Value{{Class: "mrn", Value: "MRN-20250101"}})
	if err != nil {
		log.Fatal(err)
	}
	// Every reveal names its purpose of use; it is recorded in the audit log.
	vals, err := c.Detokenize(ctx, client.Treatment, []client.Token{{Class: "mrn", Token: tok[0].Token}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(vals[0].Value)

	// Without a purpose nothing is sent.
	_, err = c.Detokenize(ctx, "", []client.Token{{Class: "mrn", Token: tok[0].Token}})
	fmt.Println(errors.Is(err, client.ErrNoPurpose))
	// Output:
	// MRN-20250101
	// true
}

func ExampleClient_TokenizeAll() {
	c, err := client.New(devGRPC, client.WithInsecure(), client.WithMaxItems(100))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// A pipeline's input: any number of values, produced as they are read.
	values := func(yield func(client.Value) bool) {
		for i := range 250 {
			if !yield(client.Value{Class: "mrn", Value: fmt.Sprintf("MRN-%08d", 70000000+i), Reference: fmt.Sprint(i)}) {
				return
			}
		}
	}
	n, inOrder := 0, true
	err = c.TokenizeAll(context.Background(), iter.Seq[client.Value](values), func(r client.TokenizeResult) error {
		if r.Err != nil {
			return r.Err
		}
		inOrder = inOrder && r.Reference == fmt.Sprint(n)
		n++
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "tokens, in input order:", inOrder)
	// Output: 250 tokens, in input order: true
}

// Production clients authenticate with mTLS: certificate files, or a SPIFFE Workload
// API source that follows the agent's rotations. (Compiled, not run: it needs a
// deployment's files and agent.)
func Example_production() {
	ctx := context.Background()

	// Certificate files (read once).
	c, err := client.New("tokenizer.internal:9090",
		client.WithTLSFiles("/etc/ehr/tls/client.crt", "/etc/ehr/tls/client.key", "/etc/ehr/tls/ca.pem"),
		client.WithTimeout(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Or SPIFFE: the agent's socket from SPIFFE_ENDPOINT_SOCKET, the server's SPIFFE ID
	// pinned.
	src, err := client.NewWorkloadX509Source(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	s, err := client.New("tokenizer.internal:9090",
		client.WithSPIFFE(src, spiffeid.RequireFromString("spiffe://hospital.example/tokenizer")))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Break-glass: ETREAT needs a justification, recorded in the audit log.
	_, err = s.Detokenize(ctx, client.EmergencyTreatment, []client.Token{{Class: "ssn", Token: "912-34-5678"}},
		client.WithJustification("unconscious patient, ED bed 4"))
	if err != nil {
		log.Fatal(err)
	}
}
