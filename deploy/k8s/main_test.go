package k8s_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the tokenizer built from this repository, as the image ships it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenizer-k8s")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tokenizer")
	cmd := exec.Command("go", "build", "-o", binary, "./cmd/tokenizer")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build tokenizer: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
