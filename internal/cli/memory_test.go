package cli

import (
	"bytes"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/phivault/tokenizer/internal/config"
)

// serve sets the runtime's soft memory limit from memory_limit (or its default), but
// leaves a GOMEMLIMIT from the environment alone.
func TestServeSetsMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	debug.SetMemoryLimit(math.MaxInt64)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	noEnv := func(string) string { return "" }

	cfg := config.Defaults()
	setMemoryLimit(cfg, noEnv, log)
	want, _ := cfg.MemoryLimitBytes()
	assert.Equal(t, want, debug.SetMemoryLimit(-1), "the default")

	cfg.MemoryLimit = "300MiB"
	setMemoryLimit(cfg, noEnv, log)
	assert.Equal(t, int64(300<<20), debug.SetMemoryLimit(-1))
	assert.Contains(t, logs.String(), "bytes=314572800")

	debug.SetMemoryLimit(123 << 20) // as the runtime would from GOMEMLIMIT=123MiB
	setMemoryLimit(cfg, func(k string) string {
		if k == "GOMEMLIMIT" {
			return "123MiB"
		}
		return ""
	}, log)
	assert.Equal(t, int64(123<<20), debug.SetMemoryLimit(-1), "GOMEMLIMIT wins")
	assert.Contains(t, logs.String(), "source=GOMEMLIMIT")
}
