package config

import (
	"errors"
	"strconv"
	"strings"
)

// Memory limit defaults (docs/operations.md, "Memory"): a base for the service's own
// working set (connections, buffers, requests of up to max_message_bytes in flight),
// plus a bound on what one cache entry holds in both of its indexes (about 0.6 KiB
// measured; rounded up).
const (
	memoryBase          = 80 << 20
	memoryPerCacheEntry = 1 << 10
)

// MemoryLimitBytes is the soft memory limit serve gives the Go runtime: memory_limit
// when set (0: none), else the default for the cache's size. Above it the garbage
// collector works harder rather than the process growing.
func (c *Config) MemoryLimitBytes() (int64, error) {
	if c.MemoryLimit == "" {
		return memoryBase + int64(max(c.Cache.Entries, 0))*memoryPerCacheEntry, nil
	}
	n, err := ParseBytes(c.MemoryLimit)
	if err == nil && n > 0 && n < minMemoryLimit {
		return 0, errors.New("want at least 32MiB (the service's own working set), or 0 for none")
	}
	return n, err
}

// minMemoryLimit is the smallest memory_limit accepted: below it the collector would
// run without pause.
const minMemoryLimit = 32 << 20

var byteUnits = []struct {
	suffix string
	factor int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}}

// ParseBytes parses a size such as 512MiB, 2GiB or 1048576 (bytes).
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	factor := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, factor = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/factor {
		return 0, errors.New("want a size such as 512MiB, 2GiB or a number of bytes (0: none)")
	}
	return n * factor, nil
}
