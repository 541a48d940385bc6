package image_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/deploy/image"
)

// TestDockerfileMatchesImage keeps the Dockerfile (for Docker users) and `make image`
// describing the same image: static trimmed build, distroless static base, the same
// user, ports, entrypoint and command.
func TestDockerfileMatchesImage(t *testing.T) {
	raw, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	var froms []string
	instr := map[string]string{}
	for _, line := range strings.Split(strings.ReplaceAll(string(raw), "\\\n", " "), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		op, arg, _ := strings.Cut(line, " ")
		op = strings.ToUpper(op)
		if op == "FROM" {
			froms = append(froms, arg)
		}
		instr[op] = strings.TrimSpace(arg) // the last one of each kind: the final stage's
		if op == "RUN" && strings.Contains(arg, "go build") {
			assert.Contains(t, arg, "CGO_ENABLED=0")
			assert.Contains(t, arg, "-trimpath")
		}
	}
	require.Len(t, froms, 2, "multi-stage: build, then final")
	assert.Contains(t, froms[1], "distroless/static")
	assert.Equal(t, image.User, instr["USER"])
	assert.Equal(t, `["`+image.BinaryPath+`"]`, instr["ENTRYPOINT"])
	assert.Equal(t, `["serve"]`, instr["CMD"])
	var ports []string
	for _, p := range strings.Fields(instr["EXPOSE"]) {
		ports = append(ports, p+"/tcp")
	}
	assert.ElementsMatch(t, image.ExposedPorts, ports)
	assert.Contains(t, instr["COPY"], image.BinaryPath)
}
