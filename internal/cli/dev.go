package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
)

// stdin is where dev reset reads its confirmation.
var stdin io.Reader = os.Stdin

// sayWhere writes the first line of every command but serve (which logs it): the
// database it uses, password redacted, and the key provider, where it uses keys.
func sayWhere(name string, cfg *config.Config, stderr io.Writer) {
	switch name {
	case "serve":
	case "migrate", "audit export":
		fmt.Fprintf(stderr, "tokenizer %s: database %s\n", name, app.DescribeDatabase(cfg))
	default:
		fmt.Fprintf(stderr, "tokenizer %s: database %s, keys from %s\n", name, app.DescribeDatabase(cfg), app.DescribeKeys(cfg))
	}
}

func devCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "reset" {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var yes bool
	cfg, code := load("dev reset", args[1:], getenv, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	})
	if cfg == nil {
		return code
	}
	if !cfg.Dev || cfg.Keys.Provider != "local" {
		fmt.Fprintln(stderr, "tokenizer dev reset: development only: it needs development mode (dev: true or --dev) and the local key provider")
		return exitUsage
	}
	sink := ""
	if s := cfg.Audit.CheckpointSink; s != "stdout" && s != "none" {
		sink = s
	}
	if !yes && !confirmReset(cfg, sink, stderr) {
		fmt.Fprintln(stderr, "tokenizer dev reset: not confirmed; nothing changed")
		return exitFailure
	}
	if err := devReset(ctx, cfg, sink, stdout); err != nil {
		fmt.Fprintf(stderr, "tokenizer dev reset: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// confirmReset says what reset destroys and asks for "yes" on stdin.
func confirmReset(cfg *config.Config, sink string, stderr io.Writer) bool {
	fmt.Fprintf(stderr, "This drops the database %s (every token and the audit log in it) and deletes the key file %s",
		app.DatabaseName(cfg.Database.URL), cfg.Keys.LocalFile)
	if sink != "" {
		fmt.Fprintf(stderr, " and the checkpoint file %s", sink)
	}
	fmt.Fprint(stderr, ", then creates them anew.\nType yes to continue: ")
	line, _ := bufio.NewReader(stdin).ReadString('\n')
	return strings.TrimSpace(line) == "yes"
}

// devReset drops the database, deletes the key file and the checkpoint file, and
// creates a new key file and a migrated database (named after the new key when the
// database is named after the key).
func devReset(ctx context.Context, cfg *config.Config, sink string, stdout io.Writer) error {
	probe := *cfg
	probe.Database.URL = config.Defaults().Database.URL
	if _, err := app.ResolveDevDatabase(&probe); err != nil {
		return err
	}
	derived := probe.Database.URL == cfg.Database.URL
	if err := store.DropDatabase(ctx, cfg.Database.URL); err != nil {
		if errors.Is(err, store.ErrDatabaseInUse) {
			return fmt.Errorf("%w: stop the running service (make run) and try again", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "dropped database %s\n", app.DatabaseName(cfg.Database.URL))
	for _, f := range []string{cfg.Keys.LocalFile, sink} {
		if f == "" {
			continue
		}
		switch err := os.Remove(f); {
		case err == nil:
			fmt.Fprintf(stdout, "deleted %s\n", f)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	if _, _, err := keys.OpenLocal(cfg.Keys.LocalFile); err != nil {
		return err
	}
	if derived {
		cfg.Database.URL = config.Defaults().Database.URL
		if _, err := app.ResolveDevDatabase(cfg); err != nil {
			return err
		}
	}
	// Init migrates and creates the data keys under the new key file, so that the
	// database is this key's before anything else opens it.
	a, err := app.Build(ctx, cfg, quietLogger(), app.ForCommand())
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Init(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created key file %s and database %s (schema version %d, data keys wrapped by the new key file)\n",
		cfg.Keys.LocalFile, app.DatabaseName(cfg.Database.URL), store.LatestVersion())
	return nil
}
