package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryLimit(t *testing.T) {
	c := Defaults()
	got, err := c.MemoryLimitBytes()
	require.NoError(t, err)
	assert.Equal(t, int64(80<<20+c.Cache.Entries<<10), got, "default: base plus the cache")
	c.Cache.Entries = 0
	got, _ = c.MemoryLimitBytes()
	assert.Equal(t, int64(80<<20), got)

	for in, want := range map[string]int64{"0": 0, "512MiB": 512 << 20, "2GiB": 2 << 30, "1048576": 1 << 20, " 64 MiB ": 64 << 20, "10KiB": 10 << 10, "7B": 7} {
		c.MemoryLimit = in
		got, err := c.MemoryLimitBytes()
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"lots", "-1", "1.5GiB", "12MB", "9999999999TiB"} {
		c.MemoryLimit = in
		_, err := c.MemoryLimitBytes()
		assert.Error(t, err, in)
		assert.ErrorContains(t, c.Validate(), "memory_limit: want a size", in)
	}
}
