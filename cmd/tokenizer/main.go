// Command tokenizer is the PHI tokenization service and its administration tool.
package main

import (
	"context"
	"os"

	"github.com/phivault/tokenizer/internal/cli"
	"github.com/phivault/tokenizer/internal/grpcx"
)

func main() {
	grpcx.RouteGRPCLog()
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
