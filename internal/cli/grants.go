package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/grant"
)

// grantsCmd runs `tokenizer grants review`: the unreviewed break-glass grants, one
// JSON object per line; with --ack ID, marks that grant reviewed by the operator.
func grantsCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "review" {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var ack string
	cfg, code := load("grants review", args[1:], getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&ack, "ack", "", "grant id to mark reviewed")
	})
	if cfg == nil {
		return code
	}
	// The keys are loaded: the command's own audit event is authenticated (audit-mac).
	a, err := openRuntime(ctx, cfg, NewLogger(cfg, stderr))
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer grants review: %v\n", err)
		return exitFailure
	}
	defer a.Close()
	if err := grantsReview(ctx, a, ack, stdout); err != nil {
		fmt.Fprintf(stderr, "tokenizer grants review: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func grantsReview(ctx context.Context, a *app.App, ack string, stdout io.Writer) error {
	if ack != "" {
		if err := auditCLI(ctx, a, "review_grant", nil); err != nil {
			return err
		}
		ok, err := a.Store.ReviewGrant(ctx, ack, cliCaller(), time.Now())
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("grant %s: no unreviewed break-glass grant with this id", ack)
		}
		fmt.Fprintf(stdout, "grant %s reviewed by %s\n", ack, cliCaller())
		return nil
	}
	if err := auditCLI(ctx, a, "list_grants", nil); err != nil {
		return err
	}
	gs, err := a.Store.ListGrants(ctx, grant.Filter{UnreviewedBreakGlass: true})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, g := range gs {
		_ = enc.Encode(map[string]any{
			"id": g.ID, "principal": g.Principal, "classes": g.Classes, "justification": g.Justification,
			"created": g.CreatedAt.UTC().Format(time.RFC3339), "not_after": g.NotAfter.UTC().Format(time.RFC3339),
		})
	}
	return nil
}
