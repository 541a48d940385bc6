// Package cli implements the tokenizer command: parse, build, run, map the exit code.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/bulk"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/grpcx"
	"github.com/phivault/tokenizer/internal/server"
	"github.com/phivault/tokenizer/internal/store"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `tokenizer: PHI tokenization service

Usage:
  tokenizer serve [flags]       run the service (gRPC, REST gateway, admin port)
  tokenizer migrate [flags]     apply database migrations
  tokenizer keys status         show data-key versions and how many rows each encrypts
  tokenizer keys rotate         add a value-encryption key version; new tokens use it
  tokenizer keys reencrypt      move every row to the newest value-encryption key
  tokenizer keys rewrap         rewrap stored data keys after a KEK rotation in Vault
  tokenizer audit verify        recompute the audit chain and check signed checkpoints
                                [--from N] [--to M] [--checkpoint FILE]
  tokenizer audit export        write the audit log: --format jsonl|csv|fhir [--from] [--to]
  tokenizer audit disclosures   list every reveal of a token: --class C --token T; or of a
                                patient: --subject S [--format csv|fhir]
  tokenizer audit receipt       print a subject's erasure receipts with proofs: --subject S;
                                verify one offline: --verify FILE [--public-key HEX]
  tokenizer audit partitions    list the audit log's monthly partitions; --ensure creates
                                this month's and next month's
  tokenizer audit archive       write an ended month's partition with its signed
                                checkpoints: --month YYYY-MM --out FILE
  tokenizer audit verify-archive  verify an archive offline: [--public-key HEX] [--prev FILE] FILE
  tokenizer grants review       list unreviewed break-glass grants; --ack ID marks one reviewed
  tokenizer bench [flags]       load-test a running service, with a Vault Transit baseline
  tokenizer bench file [flags]  time a tokenize-file job, beside the batch-1000 Tokenize ceiling
  tokenizer tokenize-file       tokenize columns of a CSV/TSV/NDJSON/Parquet file (-h for flags)
  tokenizer detokenize-file     detokenize them (with --purpose)
  tokenizer dev reset [--yes]   development only: drop and recreate the database, new key file
  tokenizer version             print the version, commit and Go version

Every command reads the same configuration: flags, then TOKENIZER_* environment,
then the YAML file named by --config or TOKENIZER_CONFIG. Run "tokenizer serve -h"
for the settings. Commands other than serve first say on stderr which database and
key provider they use, and those that use keys refuse a database whose data keys the
configured key cannot unwrap.
`

// Run runs the command line args and returns the process exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stderr)
	case "migrate":
		return migrate(ctx, rest, getenv, stdout, stderr)
	case "keys":
		return keysCmd(ctx, rest, getenv, stdout, stderr)
	case "bench":
		return benchCmd(ctx, rest, stdout, stderr)
	case "audit":
		return auditCmd(ctx, rest, getenv, stdout, stderr)
	case "tokenize-file", "detokenize-file":
		return fileCmd(ctx, bulk.Operation(strings.TrimSuffix(cmd, "-file")), rest, stderr)
	case "dev":
		return devCmd(ctx, rest, getenv, stdout, stderr)
	case "grants":
		return grantsCmd(ctx, rest, getenv, stdout, stderr)
	case "version":
		return printVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "tokenizer: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// Version is the module version, or "devel".
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func load(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, int) {
	cfg, err := config.Load(name, args, getenv, stderr, extra)
	if errors.Is(err, flag.ErrHelp) {
		return nil, exitOK
	}
	if err == nil && name != "migrate" {
		err = cfg.ValidateKeys()
	}
	if err == nil {
		_, err = app.CompileClasses(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer %s: %v\n", name, err)
		return nil, exitUsage
	}
	_, statErr := os.Stat(cfg.Keys.LocalFile)
	if _, err := app.ResolveDevDatabase(cfg); err != nil {
		fmt.Fprintf(stderr, "tokenizer %s: %v\n", name, err)
		return nil, exitFailure
	}
	sayWhere(name, cfg, stderr)
	if _, err := os.Stat(cfg.Keys.LocalFile); errors.Is(statErr, fs.ErrNotExist) && err == nil {
		fmt.Fprintf(stderr, "tokenizer %s: created the development key file %s (keep it: it unlocks this database)\n", name, cfg.Keys.LocalFile)
	}
	return cfg, -1
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// NewLogger builds the service logger. Messages are fixed strings; values never reach it.
func NewLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, code := load("serve", args, getenv, stderr, nil)
	if cfg == nil {
		return code
	}
	log := NewLogger(cfg, stderr)
	grpcx.SetGRPCLogger(log)
	log.Debug("configuration", slog.String("config", cfg.String()))
	log.Info("starting", slog.String("database", app.DescribeDatabase(cfg)), slog.String("keys", app.DescribeKeys(cfg)))
	setMemoryLimit(cfg, getenv, log)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := app.Build(ctx, cfg, log)
	if err != nil {
		log.Error("start", slog.String("error", err.Error()))
		return exitFailure
	}
	defer a.Close()
	srv, err := server.New(ctx, a)
	if err != nil {
		log.Error("start", slog.String("error", err.Error()))
		return exitFailure
	}
	if err := srv.Run(ctx); err != nil {
		if errors.Is(err, app.ErrKeyMismatch) {
			// Said plainly, not as a log attribute: it is what a newcomer must read.
			fmt.Fprintf(stderr, "\ntokenizer serve: %v\n", err)
			return exitFailure
		}
		log.Error("serve", slog.String("error", err.Error()))
		return exitFailure
	}
	return exitOK
}

func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, code := load("migrate", args, getenv, stderr, nil)
	if cfg == nil {
		return code
	}
	if cfg.Dev {
		if err := store.EnsureDatabase(ctx, cfg.Database.URL); err != nil {
			fmt.Fprintf(stderr, "tokenizer migrate: %v\n", err)
			return exitFailure
		}
	}
	st, err := app.OpenStore(ctx, cfg, 2)
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer migrate: %v\n", err)
		return exitFailure
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer migrate: %v\n", err)
		return exitFailure
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "schema is up to date (version %d)\n", store.LatestVersion())
		return exitOK
	}
	fmt.Fprintf(stdout, "applied migrations %v; schema is at version %d\n", applied, store.LatestVersion())
	return exitOK
}

// setMemoryLimit gives the Go runtime serve's soft memory limit, unless GOMEMLIMIT
// (which the runtime read at start) sets one already.
func setMemoryLimit(cfg *config.Config, getenv func(string) string, log *slog.Logger) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		log.Info("memory limit", slog.String("source", "GOMEMLIMIT"), slog.Int64("bytes", debug.SetMemoryLimit(-1)))
		return
	}
	limit, _ := cfg.MemoryLimitBytes() // validated by load
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	log.Info("memory limit", slog.String("source", "memory_limit"), slog.Int64("bytes", limit))
}
