package app

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Outage logging: while PostgreSQL or the key provider is down every request fails
// the same way, and logging each failure (hundreds of lines a second) floods the log
// pipeline and hides the first, useful line. Records at warning level and above are
// limited per message to logBurst at once and then one per logEvery; the next record
// that passes says how many were suppressed.
const (
	logBurst = 5
	logEvery = time.Second
)

// limitedHandler rate-limits warnings and errors per message.
type limitedHandler struct {
	slog.Handler
	state *logLimits
}

type logLimits struct {
	mu    sync.Mutex
	byMsg map[string]*logBucket
	now   func() time.Time
}

type logBucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// RateLimitLogs wraps h so that warnings and errors are rate-limited per message.
func RateLimitLogs(h slog.Handler) slog.Handler {
	if _, ok := h.(*limitedHandler); ok {
		return h
	}
	return &limitedHandler{Handler: h, state: &logLimits{byMsg: map[string]*logBucket{}, now: time.Now}}
}

func (h *limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.Handler.Handle(ctx, r)
	}
	pass, suppressed := h.state.take(r.Level.String() + "\x00" + r.Message)
	if !pass {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.Handler.Handle(ctx, r)
}

func (l *logLimits) take(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.byMsg[key]
	if !ok {
		if len(l.byMsg) > 1024 { // messages are fixed strings; this only bounds memory
			l.byMsg = map[string]*logBucket{}
		}
		b = &logBucket{tokens: logBurst, last: now}
		l.byMsg[key] = b
	}
	b.tokens = min(logBurst, b.tokens+now.Sub(b.last).Seconds()/logEvery.Seconds())
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}

func (h *limitedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &limitedHandler{Handler: h.Handler.WithAttrs(attrs), state: h.state}
}

func (h *limitedHandler) WithGroup(name string) slog.Handler {
	return &limitedHandler{Handler: h.Handler.WithGroup(name), state: h.state}
}
