package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

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

// keysArgs are the flags of the key commands.
type keysArgs struct {
	purpose string
	batch   int
}

type keysCommand func(ctx context.Context, rt *app.App, args keysArgs, stdout io.Writer) (string, error)

var keysCommands = map[string]keysCommand{"status": keysStatus, "rotate": keysRotate, "reencrypt": keysReencrypt, "rewrap": keysRewrap}

func keysCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	run, ok := keysCommands[sub]
	if !ok {
		fmt.Fprintf(stderr, "tokenizer keys: unknown command %q\n\n%s", sub, usage)
		return exitUsage
	}
	ka := keysArgs{purpose: string(keys.ValueEncryption), batch: 1000}
	extra := func(fs *flag.FlagSet) {
		switch sub {
		case "rotate":
			fs.StringVar(&ka.purpose, "purpose", ka.purpose, "key purpose to rotate (value-encryption, audit-digest or audit-mac)")
		case "reencrypt":
			fs.IntVar(&ka.batch, "batch", ka.batch, "rows per transaction")
		}
	}
	cfg, code := load("keys "+sub, rest, getenv, stderr, extra)
	if cfg == nil {
		return code
	}
	// Token digests, fingerprints and FF1 keys decide which token a value gets:
	// rotating them would give static values new tokens, so they do not rotate.
	if sub == "rotate" && ka.purpose != string(keys.ValueEncryption) && ka.purpose != string(keys.AuditDigest) && ka.purpose != string(keys.AuditMAC) {
		fmt.Fprintf(stderr, "tokenizer keys rotate: --purpose %s cannot rotate (it would change static tokens); value-encryption, audit-digest and audit-mac can\n", ka.purpose)
		return exitUsage
	}
	rt, err := openRuntime(ctx, cfg, NewLogger(cfg, stderr))
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer keys %s: %v\n", sub, err)
		return exitFailure
	}
	defer rt.Close()
	out, err := run(ctx, rt, ka, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer keys %s: %v\n", sub, err)
		return exitFailure
	}
	fmt.Fprint(stdout, out)
	return exitOK
}

func keysStatus(ctx context.Context, rt *app.App, _ keysArgs, stdout io.Writer) (string, error) {
	counts, err := rt.Store.CountByKeyVersion(ctx)
	if err != nil {
		return "", err
	}
	stored, err := rt.Store.DataKeys(ctx)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, k := range stored {
		fmt.Fprintf(&b, "%-28s v%-3d provider=%s created=%s\n", k.Purpose, k.Version, k.Provider, k.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	for _, v := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&b, "rows under value-encryption v%d: %d\n", v, counts[v])
	}
	return b.String(), nil
}

func keysRotate(ctx context.Context, rt *app.App, args keysArgs, _ io.Writer) (string, error) {
	v, err := rt.Keyring().Rotate(ctx, keys.Purpose(args.purpose))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s is now at version %d; running services pick it up within keys.reload_interval; run `tokenizer keys reencrypt` to move existing rows\n", args.purpose, v), nil
}

func keysReencrypt(ctx context.Context, rt *app.App, args keysArgs, _ io.Writer) (string, error) {
	eng, err := rt.Engine()
	if err != nil {
		return "", err
	}
	total := 0
	for {
		n, err := eng.Reencrypt(ctx, rt.Store, args.batch)
		if err != nil {
			return "", fmt.Errorf("%w (after %d rows)", err, total)
		}
		if n == 0 {
			break
		}
		total += n
	}
	cur, _ := rt.Keyring().Current(keys.ValueEncryption)
	return fmt.Sprintf("re-encrypted %d rows to value-encryption v%d\n", total, cur.Version), nil
}

func keysRewrap(ctx context.Context, rt *app.App, _ keysArgs, _ io.Writer) (string, error) {
	n, err := rt.Keyring().RewrapAll(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("rewrapped %d data keys under the newest key-encryption key version\n", n), nil
}
