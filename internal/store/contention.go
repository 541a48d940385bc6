package store

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// maxConflictRetries bounds the retries of a statement that PostgreSQL aborted as a
// deadlock (40P01) or serialization failure (40001). Inserts go in a consistent lock
// order (sortForLocks), so deadlocks should not happen; the retries absorb what is
// left (e.g. a unique-index wait against a concurrent purge) without failing items.
const maxConflictRetries = 4

// retryConflicts runs f again, with a short jittered backoff, while it fails with a
// conflict and ctx allows. Each f is one statement in its own transaction, so running
// it again is safe.
func retryConflicts(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; attempt <= maxConflictRetries; attempt++ {
		if err = f(); err == nil || !errors.Is(err, errs.ErrConflict) {
			return err
		}
		wait := time.Duration(attempt+1)*5*time.Millisecond + time.Duration(rand.IntN(5000))*time.Microsecond
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
	return err
}

// sortForLocks orders mappings the way every writer takes their index locks: by class,
// scope, fingerprint (the unique key two writers of the same value contend on), then
// token digest. Two batches that share values then lock them in the same order and
// cannot deadlock. perm[i] is the index in ms of sorted[i].
func sortForLocks(ms []tokenizer.Mapping) (sorted []tokenizer.Mapping, perm []int) {
	perm = make([]int, len(ms))
	for i := range perm {
		perm[i] = i
	}
	slices.SortStableFunc(perm, func(i, j int) int {
		a, b := &ms[i], &ms[j]
		if c := strings.Compare(a.Class, b.Class); c != 0 {
			return c
		}
		if c := strings.Compare(a.Scope, b.Scope); c != 0 {
			return c
		}
		if c := bytes.Compare(a.Fingerprint, b.Fingerprint); c != 0 {
			return c
		}
		return bytes.Compare(a.TokenDigest, b.TokenDigest)
	})
	sorted = make([]tokenizer.Mapping, len(ms))
	for i, k := range perm {
		sorted[i] = ms[k]
	}
	return sorted, perm
}

// tcpUserTimeout is how long sent data may stay unacknowledged before the kernel drops
// a connection: a frozen link (packets silently lost) fails connections within it
// instead of leaving them hanging for the kernel default of about 15 minutes.
const tcpUserTimeout = 10 * time.Second

// dialer is the pool's dialer: TCP keepalives every 5 s and TCP_USER_TIMEOUT.
func dialer(connect time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout:   connect,
		KeepAlive: 5 * time.Second,
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeoutOpt, int(tcpUserTimeout/time.Millisecond))
			})
		},
	}
}

// tcpUserTimeoutOpt is TCP_USER_TIMEOUT (Linux, include/uapi/linux/tcp.h).
const tcpUserTimeoutOpt = 0x12

// unsort puts flags computed for sortForLocks(ms) back in the order of ms.
func unsort(perm []int, sortedFlags []bool) []bool {
	out := make([]bool, len(perm))
	for i, k := range perm {
		out[k] = sortedFlags[i]
	}
	return out
}
