package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/bulk"
)

// Exit codes of the file commands beyond exitOK, exitFailure and exitUsage.
const (
	exitRejects     = 3 // finished, but some records were rejected
	exitMaxRejected = 4 // stopped by --max-rejects
)

const fileUsage = `Usage:
  tokenizer tokenize-file   --input FILE --output FILE --column NAME=CLASS ... [flags]
  tokenizer detokenize-file --input FILE --output FILE --column NAME=CLASS ... --purpose CODE [flags]
  tokenizer tokenize-file   --input FILE.ndjson --output FILE --profile NAME [flags]   (FHIR NDJSON)

"-" is standard input or output. Formats: csv, tsv, ndjson, parquet (from the file name or
--format), and fhir-ndjson (FHIR Bulk Data NDJSON, one resource per line, de-identified
or re-identified by a FHIR profile: --profile, or --format fhir-ndjson); .gz and .zst
files are decompressed and compressed. Exit status: 0 done, 1 failed, 2 usage, 3 done
with rejects, 4 stopped by --max-rejects.
`

// clientFlags are the connection flags of every command that calls the service.
type clientFlags struct {
	addr, ca, cert, key, serverName string
	plaintext                       bool
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "grpc", "127.0.0.1:9090", "tokenizer gRPC address")
	fs.BoolVar(&c.plaintext, "insecure", false, "plaintext, no client certificate (development only)")
	fs.StringVar(&c.ca, "tls-ca", "", "CA bundle that signed the service's certificate")
	fs.StringVar(&c.cert, "tls-cert", "", "client certificate (mTLS)")
	fs.StringVar(&c.key, "tls-key", "", "client private key (mTLS)")
	fs.StringVar(&c.serverName, "tls-server-name", "", "name to verify in the service's certificate (default: the host of --grpc)")
}

func (c *clientFlags) dial() (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials
	switch {
	case c.plaintext:
		creds = insecure.NewCredentials()
	case c.cert == "" || c.key == "" || c.ca == "":
		return nil, errors.New("--tls-ca, --tls-cert and --tls-key are required (or --insecure for a development service)")
	default:
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--tls-ca: no certificate in the file")
		}
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: c.serverName})
	}
	return grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

type mappings []bulk.Mapping

func (m *mappings) String() string { return fmt.Sprint(*m) }
func (m *mappings) Set(s string) error {
	v, err := bulk.ParseMapping(s)
	if err == nil {
		*m = append(*m, v)
	}
	return err
}

// fileJobFlags parses the flags of tokenize-file and detokenize-file.
func fileJobFlags(name string, op bulk.Operation, args []string, stderr io.Writer) (*bulk.Job, *clientFlags, string, time.Duration, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, fileUsage); fs.PrintDefaults() }
	j := &bulk.Job{Operation: op}
	cf := &clientFlags{}
	cf.register(fs)
	var cols mappings
	var jobFile, progress string
	var interval time.Duration
	fs.Var(&cols, "column", "NAME=CLASS: tokenize column NAME (CSV/TSV) or path NAME (NDJSON: /a/b, a.b, a[*].b) with CLASS; repeatable")
	fs.StringVar(&jobFile, "job", "", "YAML job file (flags given win over it)")
	fs.StringVar(&j.Input, "input", "", "input file, or - for standard input (the default)")
	fs.StringVar(&j.Output, "output", "", "output file, or - for standard output (the default)")
	fs.StringVar(&j.Format, "format", "", "csv, tsv, ndjson, parquet or fhir-ndjson (default: from the file name; ndjson with --profile is fhir-ndjson)")
	fs.StringVar(&j.Profile, "profile", "", "fhir-ndjson: the FHIR profile (safe_harbor, limited_data_set or a configured one)")
	fs.StringVar(&j.Delimiter, "delimiter", "", "CSV field delimiter (default , for csv and tab for tsv)")
	fs.StringVar(&j.Quote, "quote", "", `CSV quote character (default ")`)
	fs.StringVar(&j.RejectFile, "reject-file", "", "reject file (default: OUTPUT.rejects.csv)")
	fs.StringVar(&j.Checkpoint, "checkpoint", "", "checkpoint file (default: OUTPUT.checkpoint)")
	fs.IntVar(&j.MaxRejects, "max-rejects", -1, "stop when more records than this are rejected (-1: never)")
	fs.IntVar(&j.BatchItems, "batch", 0, "values per request (default 1000; fhir-ndjson: resources per request, default 100)")
	fs.IntVar(&j.Concurrency, "concurrency", 0, "requests in flight (default 4)")
	fs.IntVar(&j.CheckpointRows, "checkpoint-rows", 0, "records between checkpoints (default 50000)")
	fs.BoolVar(&j.Resume, "resume", false, "continue an interrupted job from its checkpoint")
	fs.StringVar(&progress, "progress", "auto", "auto (a bar on a terminal, lines otherwise), bar, lines or none")
	fs.DurationVar(&interval, "progress-interval", 10*time.Second, "time between progress lines when not on a terminal")
	if op == bulk.Detokenize {
		fs.StringVar(&j.Purpose, "purpose", "", "HL7 v3 PurposeOfUse of the disclosure (required)")
		fs.StringVar(&j.Justification, "justification", "", "justification recorded in the audit log")
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, "", 0, err
	}
	if fs.NArg() > 0 {
		return nil, nil, "", 0, fmt.Errorf("unexpected argument %q (use --input and --output)", fs.Arg(0))
	}
	j.Columns = cols
	if jobFile != "" {
		if err := bulk.LoadJobFile(jobFile, j); err != nil {
			return nil, nil, "", 0, err
		}
	}
	return j, cf, progress, interval, nil
}

func progressFor(mode string, interval time.Duration, stderr io.Writer) (*bulk.Progress, error) {
	tty := false
	if f, ok := stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	switch mode {
	case "none":
		return nil, nil
	case "auto":
	case "bar":
		tty = true
	case "lines":
		tty = false
	default:
		return nil, fmt.Errorf("--progress %q: want auto, bar, lines or none", mode)
	}
	return &bulk.Progress{W: stderr, TTY: tty, Interval: interval}, nil
}

// fileCmd runs tokenize-file or detokenize-file.
func fileCmd(ctx context.Context, op bulk.Operation, args []string, stderr io.Writer) int {
	name := string(op) + "-file"
	j, cf, mode, interval, err := fileJobFlags(name, op, args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer %s: %v\n", name, err)
		return exitUsage
	}
	prog, err := progressFor(mode, interval, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer %s: %v\n", name, err)
		return exitUsage
	}
	conn, err := cf.dial()
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer %s: %v\n", name, err)
		return exitUsage
	}
	defer conn.Close()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sum, err := bulk.Run(ctx, j, bulk.Options{Client: tokenizerv1.NewTokenizerServiceClient(conn), FHIR: tokenizerv1.NewFhirServiceClient(conn), Progress: prog})
	if err == nil || sum.Records > 0 {
		bulk.WriteSummary(stderr, sum)
	}
	fmt.Fprintf(stderr, "client peak RSS: %.1f MiB\n", float64(peakRSS())/(1<<20))
	switch {
	case errors.Is(err, bulk.ErrTooManyRejects):
		fmt.Fprintf(stderr, "tokenizer %s: %v (see %s)\n", name, err, j.RejectFile)
		return exitMaxRejected
	case err != nil:
		msg := err.Error()
		if j.Checkpoint != "" && !strings.HasPrefix(msg, "resume:") {
			msg += "; rerun with --resume to continue"
		}
		fmt.Fprintf(stderr, "tokenizer %s: %s\n", name, msg)
		return exitFailure
	case sum.Rejects > 0:
		fmt.Fprintf(stderr, "tokenizer %s: %d records rejected (see %s)\n", name, sum.Rejects, j.RejectFile)
		return exitRejects
	}
	return exitOK
}
