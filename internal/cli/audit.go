package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
)

// cliCaller is the identity the audit log records for administration commands.
func cliCaller() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// auditCLI appends the event of an administration command before it outputs anything.
func auditCLI(ctx context.Context, a *app.App, op string, classes []string) error {
	host, _ := os.Hostname()
	rec := &audit.Record{Caller: cliCaller(), ClientAddress: host, Classes: classes, Items: 1}
	return a.Audit.Append(ctx, rec.Event(op, "cli-"+fmt.Sprint(time.Now().UnixNano()), "OK", ""))
}

// auditArgs are the flags of the audit commands.
type auditArgs struct {
	from, to                                     int64
	checkpointFile, format, output, class, token string
	subject, verifyFile, publicKey               string
	month                                        string
	ensure                                       bool
}

func (a *auditArgs) flags(sub string) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.Int64Var(&a.from, "from", 0, "first seq (default: the start)")
		fs.Int64Var(&a.to, "to", 0, "last seq (default: the head)")
		switch sub {
		case "verify":
			fs.StringVar(&a.checkpointFile, "checkpoint", "", "checkpoint file (the sink) whose checkpoints the chain must match")
		case "export":
			fs.StringVar(&a.format, "format", "jsonl", "jsonl, csv or fhir")
			fs.StringVar(&a.output, "output", "", "file to write (default: standard output)")
		case "disclosures":
			fs.StringVar(&a.class, "class", "", "token class")
			fs.StringVar(&a.token, "token", "", "token whose disclosures to list")
			fs.StringVar(&a.subject, "subject", "", "data subject (patient) whose disclosures to list, instead of --class and --token")
			fs.StringVar(&a.format, "format", "", "with --subject: csv or fhir (default: JSON lines)")
		case "receipt":
			receiptFlags(fs, a)
		case "archive":
			archiveFlags(fs, a)
		case "partitions":
			fs.BoolVar(&a.ensure, "ensure", false, "create this month's and next month's partitions first, if missing")
		}
	}
}

// auditCommand is one audit subcommand: it returns an exit code, or an error (exit 1).
type auditCommand func(ctx context.Context, cfg *config.Config, a *auditArgs, stdout, stderr io.Writer) (int, error)

var auditCommands = map[string]auditCommand{
	"verify": auditVerify, "export": auditExport, "disclosures": auditDisclosures, "receipt": auditReceipt,
	"archive": auditArchive, "partitions": auditPartitions,
}

func auditCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	if code, offline := offlineArchive(sub, rest, stdout, stderr); offline {
		return code
	}
	run, ok := auditCommands[sub]
	if !ok {
		fmt.Fprintf(stderr, "tokenizer audit: unknown command %q\n\n%s", sub, usage)
		return exitUsage
	}
	if code, offline := offlineReceipt(sub, rest, stdout, stderr); offline {
		return code
	}
	var a auditArgs
	cfg, code := load("audit "+sub, rest, getenv, stderr, a.flags(sub))
	if cfg == nil {
		return code
	}
	code, err := run(ctx, cfg, &a, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer audit %s: %v\n", sub, err)
		return exitFailure
	}
	return code
}

// openSigner opens the runtime with its keys checked and the key provider's signer
// (what must sign or verify checkpoints); the caller closes the runtime.
func openSigner(ctx context.Context, cfg *config.Config, stderr io.Writer, what string) (*app.App, audit.Signer, error) {
	a, err := openRuntime(ctx, cfg, NewLogger(cfg, stderr))
	if err != nil {
		return nil, nil, err
	}
	if err := a.CheckKeys(ctx); err != nil {
		a.Close()
		return nil, nil, err
	}
	signer, ok := a.Signer()
	if !ok {
		a.Close()
		return nil, nil, fmt.Errorf("key provider %s cannot %s", a.Provider.Name(), what)
	}
	return a, signer, nil
}

func auditVerify(ctx context.Context, cfg *config.Config, args *auditArgs, stdout, stderr io.Writer) (int, error) {
	held, err := heldCheckpoints(cfg, args, stderr)
	if err != nil {
		return 0, err
	}
	a, signer, err := openSigner(ctx, cfg, stderr, "verify signatures")
	if err != nil {
		return 0, err
	}
	defer a.Close()
	res, err := audit.Verify(ctx, a.Store, signer, a.AuditKeys(), args.from, args.to, held)
	if err != nil {
		return 0, err
	}
	if !res.OK {
		fmt.Fprintf(stdout, "FAILED at seq %d: %s\n", res.FirstBadSeq, res.Reason)
		return exitFailure, nil
	}
	fmt.Fprintf(stdout, "OK: %d events and %d checkpoint matches verified; head seq %d hash %s\n",
		res.EventsChecked, res.CheckpointsChecked, res.HeadSeq, hex.EncodeToString(res.HeadHash))
	if res.AnchorSeq > 0 {
		fmt.Fprintf(stdout, "events 1..%d are archived (not in the database): verified from seq %d, linked to the signed checkpoint at seq %d\n",
			res.AnchorSeq, res.AnchorSeq+1, res.AnchorSeq)
	}
	return exitOK, nil
}

// heldCheckpoints are the checkpoints verify holds the chain to: the --checkpoint file,
// else the configured sink when it is a file (so that a truncated or wiped log fails
// without the operator having to remember the flag).
func heldCheckpoints(cfg *config.Config, args *auditArgs, stderr io.Writer) ([]audit.Checkpoint, error) {
	if args.checkpointFile == "" {
		held, found, err := audit.SinkCheckpoints(cfg.Audit.CheckpointSink)
		if err == nil && !found && cfg.Audit.CheckpointSink != "none" {
			fmt.Fprintf(stderr, "tokenizer audit verify: no checkpoints from audit.checkpoint_sink %q; a truncated log is detected only against checkpoints (pass --checkpoint)\n", cfg.Audit.CheckpointSink)
		}
		return held, err
	}
	f, err := os.Open(args.checkpointFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return audit.ReadCheckpoints(f)
}

func auditExport(ctx context.Context, cfg *config.Config, args *auditArgs, stdout, stderr io.Writer) (int, error) {
	f := audit.Format(args.format)
	if f != audit.JSONL && f != audit.CSV && f != audit.FHIR {
		fmt.Fprintf(stderr, "tokenizer audit export: --format %q: want jsonl, csv or fhir\n", args.format)
		return exitUsage, nil
	}
	// The audit key authenticates the command's own event: export needs the keys too.
	a, err := openRuntime(ctx, cfg, NewLogger(cfg, stderr))
	if err != nil {
		return 0, err
	}
	defer a.Close()
	if err := auditCLI(ctx, a, "export_audit", nil); err != nil {
		return 0, err
	}
	w := stdout
	if args.output != "" {
		file, err := os.OpenFile(args.output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return 0, err
		}
		defer file.Close()
		w = file
	}
	return exitOK, audit.Export(ctx, a.Store, f, args.from, args.to, w)
}

func auditDisclosures(ctx context.Context, cfg *config.Config, args *auditArgs, stdout, stderr io.Writer) (int, error) {
	if args.subject != "" {
		return subjectDisclosures(ctx, cfg, args, stdout, stderr)
	}
	if args.class == "" || args.token == "" {
		fmt.Fprintln(stderr, "tokenizer audit disclosures: --class and --token, or --subject, are required")
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
	digests, err := eng.AuditDigests(args.class, args.token)
	if err != nil {
		return 0, err
	}
	if err := auditCLI(ctx, a, "list_disclosures", []string{args.class}); err != nil {
		return 0, err
	}
	ds, err := audit.Disclosures(ctx, a.Store, digests, time.Time{}, time.Time{})
	if err != nil {
		return 0, err
	}
	enc := json.NewEncoder(stdout)
	for _, d := range ds {
		_ = enc.Encode(map[string]any{
			"seq": d.Seq, "time": d.Decoded.Time, "caller": d.Caller, "purpose_of_use": d.PurposeOfUse,
			"justification": d.Justification, "client_address": d.ClientAddress, "break_glass": d.BreakGlass,
			"request_id": d.RequestID,
		})
	}
	return exitOK, nil
}
