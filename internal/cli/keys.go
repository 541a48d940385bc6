package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// runtime is what the key commands need: the vault, the keyring and the engine.
type runtime struct {
	store  *store.Store
	keys   *keys.Keyring
	engine *tokenizer.Engine
	close  func()
}

func openRuntime(ctx context.Context, cfg *config.Config, log *slog.Logger) (*runtime, error) {
	p, closeP, err := Provider(cfg, log)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.Database.URL, store.Options{MaxConns: 4, ConnectTimeout: cfg.Database.ConnectTimeout})
	if err != nil {
		closeP()
		return nil, err
	}
	fail := func(err error) (*runtime, error) { st.Close(); closeP(); return nil, err }
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		return fail(err)
	}
	if v != store.LatestVersion() {
		return fail(fmt.Errorf("database schema is at version %d, this build needs %d: run `tokenizer migrate`", v, store.LatestVersion()))
	}
	classes, err := cfg.CompiledClasses()
	if err != nil {
		return fail(err)
	}
	kr := keys.NewKeyring(p, st)
	if err := kr.Ensure(ctx, tokenizer.KeyPurposes(classes)...); err != nil {
		return fail(err)
	}
	eng, err := tokenizer.New(classes, st, kr, tokenizer.Limits{})
	if err != nil {
		return fail(err)
	}
	return &runtime{store: st, keys: kr, engine: eng, close: func() { st.Close(); closeP() }}, nil
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
	defer rt.close()
	switch sub {
	case "status":
		counts, err := rt.store.CountByKeyVersion(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "tokenizer keys status: %v\n", err)
			return exitFailure
		}
		stored, err := rt.store.DataKeys(ctx)
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
		v, err := rt.keys.Rotate(ctx, keys.Purpose(purpose))
		if err != nil {
			fmt.Fprintf(stderr, "tokenizer keys rotate: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s is now at version %d; running services pick it up within keys.reload_interval; run `tokenizer keys reencrypt` to move existing rows\n", purpose, v)
	case "reencrypt":
		total := 0
		for {
			n, err := rt.engine.Reencrypt(ctx, rt.store, batch)
			if err != nil {
				fmt.Fprintf(stderr, "tokenizer keys reencrypt: %v (after %d rows)\n", err, total)
				return exitFailure
			}
			if n == 0 {
				break
			}
			total += n
		}
		cur, _ := rt.keys.Current(keys.ValueEncryption)
		fmt.Fprintf(stdout, "re-encrypted %d rows to value-encryption v%d\n", total, cur.Version)
	case "rewrap":
		n, err := rt.keys.RewrapAll(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "tokenizer keys rewrap: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "rewrapped %d data keys under the newest key-encryption key version\n", n)
	}
	return exitOK
}
