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

	for in, want := range map[string]int64{"0": 0, "512MiB": 512 << 20, "2GiB": 2 << 30, "33554432": 32 << 20, " 64 MiB ": 64 << 20, "40960KiB": 40 << 20} {
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
	for _, in := range []string{"10", "7B", "31MiB"} {
		c.MemoryLimit = in
		assert.ErrorContains(t, c.Validate(), "memory_limit: want at least 32MiB", in)
	}
}
