package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/bench"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/vault"
)

func parseBatches(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--batches: %q is not a positive number", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "file" {
		return benchFile(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("grpc", "127.0.0.1:9090", "tokenizer gRPC address")
	vaultAddr := fs.String("vault-addr", "", "Vault address for the Transit baseline (empty: no baseline)")
	vaultToken := fs.String("vault-token", "", "Vault token for the baseline (needs transit write)")
	admin := fs.String("admin", "", "the service's admin address (host:port): adds its CPU seconds per 1,000 values and RSS")
	asJSON := fs.Bool("json", false, "print the results as JSON, for machines")
	floorURL := fs.String("database-url", "", "PostgreSQL URL on which to measure the floor of new mappings (multi-row INSERTs into a scratch table with two random 16-byte keys) beside the baseline (empty: not measured)")
	var cfg bench.Config
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "how long each workload runs")
	fs.IntVar(&cfg.Clients, "clients", 4, "concurrent clients")
	batchList := fs.String("batches", "1,100,1000", "batch sizes")
	fs.StringVar(&cfg.StaticClass, "static-class", "ssn", "static class to measure")
	fs.StringVar(&cfg.DynamicClass, "dynamic-class", "ssn_dynamic", "dynamic class to measure")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "tokenizer bench: %v\n", err)
		return code
	}
	var err error
	if cfg.Batches, err = parseBatches(*batchList); err != nil {
		return fail(exitUsage, err)
	}
	// Ctrl-C or SIGTERM ends the run through its context, so that what it made (the
	// floor's scratch table) is removed before it exits.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return fail(exitFailure, err)
	}
	defer conn.Close()
	r := &bench.Runner{Config: cfg, Service: tokenizerv1.NewTokenizerServiceClient(conn), Admin: *admin}
	if *vaultAddr != "" {
		vc, err := vault.New(config.VaultConfig{Address: *vaultAddr, Token: *vaultToken}, quietLogger())
		if err != nil {
			return fail(exitFailure, fmt.Errorf("vault: %w", err))
		}
		defer vc.Close()
		r.Vault = vc
	}
	if *floorURL != "" {
		pool, err := bench.OpenFloorDatabase(ctx, *floorURL, cfg.Clients)
		if err != nil {
			return fail(exitFailure, err)
		}
		defer pool.Close()
		r.Database = pool
	}
	results, err := r.Run(ctx)
	if ctx.Err() != nil {
		// Also when the run "ended": a workload cut short by the interrupt would be
		// reported as if it had run its full duration.
		return fail(exitFailure, errors.New("interrupted"))
	}
	if err != nil {
		return fail(exitFailure, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return fail(exitFailure, err)
		}
		return exitOK
	}
	r.Report(stdout, results)
	return exitOK
}
