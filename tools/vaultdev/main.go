// Command vaultdev is HashiCorp Vault v1.13.0's command line, built from this pinned
// module because Vault cannot be installed with `go install`. Tests and `make
// run-vault` use it to start a dev server (`vaultdev server -dev`).
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
