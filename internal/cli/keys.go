package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
)

// openRuntime builds the service's parts for a command and loads its data keys; the
// schema must be current.
func openRuntime(ctx context.Context, cfg *config.Config, log *slog.Logger) (*app.App, error) {
	a, err := app.Build(ctx, cfg, log, app.ForCommand())
	if err != nil {
		return nil, err
	}
	if err := a.Load(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func keysCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	purpose := string(keys.ValueEncryption)
	batch := 1000
	extra := func(fs *flag.FlagSet) {
		switch sub {
		case "rotate":
			fs.StringVar(&purpose, "purpose", purpose, "key purpose to rotate (value-encryption or audit-digest)")
		case "reencrypt":
			fs.IntVar(&batch, "batch", batch, "rows per transaction")
		}
	}
	switch sub {
	case "status", "rotate", "reencrypt", "rewrap":
	default:
		fmt.Fprintf(stderr, "tokenizer keys: unknown command %q\n\n%s", sub, usage)
		return exitUsage
	}
	cfg, code := load("keys "+sub, rest, getenv, stderr, extra)
	if cfg == nil {
		return code
	}
	log := NewLogger(cfg, stderr)
	rt, err := openRuntime(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer keys %s: %v\n", sub, err)
		return exitFailure
	}
	defer rt.Close()
	switch sub {
	case "status":
		counts, err := rt.Store.CountByKeyVersion(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "tokenizer keys status: %v\n", err)
			return exitFailure
		}
		stored, err := rt.Store.DataKeys(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "tokenizer keys status: %v\n", err)
			return exitFailure
		}
		for _, k := range stored {
			fmt.Fprintf(stdout, "%-28s v%-3d provider=%s created=%s\n", k.Purpose, k.Version, k.Provider, k.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
		}
		vs := make([]int, 0, len(counts))
		for v := range counts {
			vs = append(vs, v)
		}
		sort.Ints(vs)
		for _, v := range vs {
			fmt.Fprintf(stdout, "rows under value-encryption v%d: %d\n", v, counts[v])
		}
	case "rotate":
		// Token digests, fingerprints and FF1 keys decide which token a value gets:
		// rotating them would give static values new tokens, so they do not rotate.
		if purpose != string(keys.ValueEncryption) && purpose != string(keys.AuditDigest) {
			fmt.Fprintf(stderr, "tokenizer keys rotate: --purpose %s cannot rotate (it would change static tokens); value-encryption and audit-digest can\n", purpose)
			return exitUsage
		}
		v, err := rt.Keyring().Rotate(ctx, keys.Purpose(purpose))
		if err != nil {
			fmt.Fprintf(stderr, "tokenizer keys rotate: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s is now at version %d; running services pick it up within keys.reload_interval; run `tokenizer keys reencrypt` to move existing rows\n", purpose, v)
	case "reencrypt":
		total := 0
		for {
			eng, err := rt.Engine()
			if err != nil {
				fmt.Fprintf(stderr, "tokenizer keys reencrypt: %v\n", err)
				return exitFailure
			}
			n, err := eng.Reencrypt(ctx, rt.Store, batch)
			if err != nil {
				fmt.Fprintf(stderr, "tokenizer keys reencrypt: %v (after %d rows)\n", err, total)
				return exitFailure
			}
			if n == 0 {
				break
			}
			total += n
		}
		cur, _ := rt.Keyring().Current(keys.ValueEncryption)
		fmt.Fprintf(stdout, "re-encrypted %d rows to value-encryption v%d\n", total, cur.Version)
	case "rewrap":
		n, err := rt.Keyring().RewrapAll(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "tokenizer keys rewrap: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "rewrapped %d data keys under the newest key-encryption key version\n", n)
	}
	return exitOK
}
