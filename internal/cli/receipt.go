package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
)

func receiptFlags(fs *flag.FlagSet, a *auditArgs) {
	fs.StringVar(&a.subject, "subject", "", "subject (patient identifier) whose erasure receipts to print")
	fs.StringVar(&a.verifyFile, "verify", "", "receipt file to verify offline (no database, no key provider)")
	fs.StringVar(&a.publicKey, "public-key", "", "checkpoint signing public key (ed25519, hex) to verify against; default: the one in the receipt")
}

// auditReceipt prints a subject's erasure receipts, or verifies one offline.
func auditReceipt(ctx context.Context, cfg *config.Config, args *auditArgs, stdout, stderr io.Writer) (int, error) {
	if args.verifyFile != "" {
		return verifyReceiptFile(args, stdout, stderr)
	}
	if args.subject == "" {
		fmt.Fprintln(stderr, "tokenizer audit receipt: --subject or --verify is required")
		return exitUsage, nil
	}
	a, err := openRuntime(ctx, cfg, NewLogger(cfg, stderr))
	if err != nil {
		return 0, err
	}
	defer a.Close()
	return printReceipts(ctx, a, args.subject, stdout, stderr)
}

func printReceipts(ctx context.Context, a *app.App, subject string, stdout, stderr io.Writer) (int, error) {
	eng, err := a.Engine()
	if err != nil {
		return 0, err
	}
	digests, err := eng.SubjectAuditDigests(subject)
	if err != nil {
		return 0, err
	}
	if err := auditCLI(ctx, a, "erasure_receipt", nil); err != nil {
		return 0, err
	}
	rcs, err := a.Receipts(ctx, digests)
	if err != nil {
		return 0, err
	}
	if len(rcs) == 0 {
		fmt.Fprintln(stderr, "no erasure receipt for this subject")
		return exitFailure, nil
	}
	for _, rc := range rcs {
		doc, err := audit.MarshalReceipt(rc)
		if err != nil {
			return 0, err
		}
		fmt.Fprintln(stdout, doc)
		if rc.Checkpoint.Seq == 0 {
			fmt.Fprintln(stderr, "note: no signed checkpoint covers this receipt yet; run again after the next checkpoint")
		}
	}
	return exitOK, nil
}

// verifyReceiptFile checks a receipt document offline and prints what it proves.
func verifyReceiptFile(args *auditArgs, stdout, stderr io.Writer) (int, error) {
	raw, err := os.ReadFile(args.verifyFile)
	if err != nil {
		return 0, err
	}
	var rc audit.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil {
		return 0, errors.New("receipt: not a JSON receipt document")
	}
	keyHex := args.publicKey
	if keyHex == "" {
		keyHex = rc.PublicKey
		fmt.Fprintln(stderr, "note: verifying with the public key inside the receipt; pass --public-key with your own pinned copy")
	}
	pub, err := hex.DecodeString(strings.TrimSpace(keyHex))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return 0, errors.New("public key: want 32 bytes in hex")
	}
	ev, err := audit.VerifyReceipt(rc, ed25519.PublicKey(pub))
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		return exitFailure, nil
	}
	fmt.Fprintf(stdout, "OK: erasure of subject %s at %s by %s (reason %q), erased %v; event seq %d in the chain under checkpoint seq %d signed %s\n",
		strings.Join(ev.SubjectDigests, ","), ev.Time, ev.Caller, ev.Justification, ev.Erased, ev.Seq, rc.Checkpoint.Seq, rc.Checkpoint.Time)
	return exitOK, nil
}

// offlineReceipt runs `audit receipt --verify FILE`, which needs no configuration,
// database or key provider; offline is false for every other command line.
func offlineReceipt(sub string, rest []string, stdout, stderr io.Writer) (code int, offline bool) {
	if sub != "receipt" || !slices.ContainsFunc(rest, func(s string) bool {
		return strings.HasPrefix(strings.TrimLeft(s, "-"), "verify") && strings.HasPrefix(s, "-")
	}) {
		return 0, false
	}
	var a auditArgs
	fs := flag.NewFlagSet("tokenizer audit receipt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&a.verifyFile, "verify", "", "receipt file to verify offline")
	fs.StringVar(&a.publicKey, "public-key", "", "checkpoint signing public key (ed25519, hex)")
	if err := fs.Parse(rest); err != nil || a.verifyFile == "" {
		return exitUsage, true
	}
	code, err := verifyReceiptFile(&a, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer audit receipt: %v\n", err)
		return exitFailure, true
	}
	return code, true
}

// subjectDisclosures is `audit disclosures --subject`: the accounting of disclosures of
// one patient, as JSON lines, CSV or a FHIR AuditEvent Bundle.
func subjectDisclosures(ctx context.Context, cfg *config.Config, args *auditArgs, stdout, stderr io.Writer) (int, error) {
	f := audit.Format(args.format)
	if args.format != "" && f != audit.CSV && f != audit.FHIR {
		fmt.Fprintf(stderr, "tokenizer audit disclosures: --format %q: want csv or fhir\n", args.format)
		return exitUsage, nil
	}
	a, err := openRuntime(ctx, cfg, NewLogger(cfg, stderr))
	if err != nil {
		return 0, err
	}
	defer a.Close()
	eng, err := a.Engine()
	if err != nil {
		return 0, err
	}
	digests, err := eng.SubjectAuditDigests(args.subject)
	if err != nil {
		return 0, err
	}
	if err := auditCLI(ctx, a, "list_disclosures", nil); err != nil {
		return 0, err
	}
	if args.format != "" {
		return exitOK, audit.ExportDisclosures(ctx, a.Store, digests, time.Time{}, time.Time{}, f, stdout)
	}
	ds, err := audit.Disclosures(ctx, a.Store, digests, time.Time{}, time.Time{})
	if err != nil {
		return 0, err
	}
	enc := json.NewEncoder(stdout)
	for _, d := range ds {
		_ = enc.Encode(map[string]any{
			"seq": d.Seq, "time": d.Decoded.Time, "caller": d.Caller, "purpose_of_use": d.PurposeOfUse,
			"justification": d.Justification, "break_glass": d.BreakGlass, "classes": d.Classes, "grants": d.Grants,
			"request_id": d.RequestID,
		})
	}
	return exitOK, nil
}
