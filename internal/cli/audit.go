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

func auditCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	var from, to int64
	var checkpointFile, format, output, class, token string
	extra := func(fs *flag.FlagSet) {
		fs.Int64Var(&from, "from", 0, "first seq (default: the start)")
		fs.Int64Var(&to, "to", 0, "last seq (default: the head)")
		switch sub {
		case "verify":
			fs.StringVar(&checkpointFile, "checkpoint", "", "checkpoint file (the sink) whose checkpoints the chain must match")
		case "export":
			fs.StringVar(&format, "format", "jsonl", "jsonl, csv or fhir")
			fs.StringVar(&output, "output", "", "file to write (default: standard output)")
		case "disclosures":
			fs.StringVar(&class, "class", "", "token class")
			fs.StringVar(&token, "token", "", "token whose disclosures to list")
		}
	}
	switch sub {
	case "verify", "export", "disclosures":
	default:
		fmt.Fprintf(stderr, "tokenizer audit: unknown command %q\n\n%s", sub, usage)
		return exitUsage
	}
	cfg, code := load("audit "+sub, rest, getenv, stderr, extra)
	if cfg == nil {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "tokenizer audit %s: %v\n", sub, err)
		return exitFailure
	}
	log := NewLogger(cfg, stderr)
	switch sub {
	case "verify":
		var held []audit.Checkpoint
		if checkpointFile != "" {
			f, err := os.Open(checkpointFile)
			if err != nil {
				return fail(err)
			}
			held, err = audit.ReadCheckpoints(f)
			f.Close()
			if err != nil {
				return fail(err)
			}
		}
		a, err := app.Build(ctx, cfg, log, app.ForCommand())
		if err != nil {
			return fail(err)
		}
		defer a.Close()
		signer, ok := a.Signer()
		if !ok {
			return fail(fmt.Errorf("key provider %s cannot verify signatures", a.Provider.Name()))
		}
		res, err := audit.Verify(ctx, a.Store, signer, from, to, held)
		if err != nil {
			return fail(err)
		}
		if !res.OK {
			fmt.Fprintf(stdout, "FAILED at seq %d: %s\n", res.FirstBadSeq, res.Reason)
			return exitFailure
		}
		fmt.Fprintf(stdout, "OK: %d events and %d checkpoint matches verified; head seq %d hash %s\n",
			res.EventsChecked, res.CheckpointsChecked, res.HeadSeq, hex.EncodeToString(res.HeadHash))
		return exitOK
	case "export":
		f := audit.Format(format)
		if f != audit.JSONL && f != audit.CSV && f != audit.FHIR {
			fmt.Fprintf(stderr, "tokenizer audit export: --format %q: want jsonl, csv or fhir\n", format)
			return exitUsage
		}
		a, err := app.Build(ctx, cfg, log, app.ForCommand(), app.WithoutKeys())
		if err != nil {
			return fail(err)
		}
		defer a.Close()
		if err := auditCLI(ctx, a, "export_audit", nil); err != nil {
			return fail(err)
		}
		w := stdout
		if output != "" {
			file, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fail(err)
			}
			defer file.Close()
			w = file
		}
		if err := audit.Export(ctx, a.Store, f, from, to, w); err != nil {
			return fail(err)
		}
		return exitOK
	default: // disclosures
		if class == "" || token == "" {
			fmt.Fprintln(stderr, "tokenizer audit disclosures: --class and --token are required")
			return exitUsage
		}
		rt, err := openRuntime(ctx, cfg, log)
		if err != nil {
			return fail(err)
		}
		defer rt.Close()
		eng, err := rt.Engine()
		if err != nil {
			return fail(err)
		}
		digests, err := eng.AuditDigests(class, token)
		if err != nil {
			return fail(err)
		}
		if err := auditCLI(ctx, rt, "list_disclosures", []string{class}); err != nil {
			return fail(err)
		}
		ds, err := audit.Disclosures(ctx, rt.Store, digests, time.Time{}, time.Time{})
		if err != nil {
			return fail(err)
		}
		enc := json.NewEncoder(stdout)
		for _, d := range ds {
			_ = enc.Encode(map[string]any{
				"seq": d.Seq, "time": d.Decoded.Time, "caller": d.Caller, "purpose_of_use": d.PurposeOfUse,
				"justification": d.Justification, "client_address": d.ClientAddress, "break_glass": d.BreakGlass,
				"request_id": d.RequestID,
			})
		}
		return exitOK
	}
}
