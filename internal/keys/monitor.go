package keys

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Monitor watches the key provider: it checks it every CheckInterval (while the check
// fails, Down reports true and requests must fail closed, so that sealing Vault stops
// every reveal) and re-reads the stored data keys every ReloadInterval (rotations and
// rewraps made by `tokenizer keys` or another replica).
type Monitor struct {
	Provider       Provider
	Keyring        func() *Keyring // the keyring in service, nil before start-up finishes
	CheckInterval  time.Duration
	ReloadInterval time.Duration
	Log            *slog.Logger
	// OnChange is called when the provider goes down or comes back.
	OnChange func(down bool)

	down atomic.Bool
}

// Down reports whether the provider failed its last check.
func (m *Monitor) Down() bool { return m.down.Load() }

// Run checks and reloads until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	check := time.NewTicker(m.CheckInterval)
	defer check.Stop()
	reload := time.NewTicker(m.ReloadInterval)
	defer reload.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			m.check(ctx)
		case <-reload.C:
			m.reload(ctx)
		}
	}
}

func (m *Monitor) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, m.CheckInterval)
	err := m.Provider.Check(cctx)
	cancel()
	down := err != nil
	if m.down.Swap(down) == down {
		return
	}
	if down {
		m.Log.Error("key provider unavailable: refusing requests", slog.String("error", err.Error()))
	} else {
		m.Log.Info("key provider available again")
	}
	if m.OnChange != nil {
		m.OnChange(down)
	}
}

func (m *Monitor) reload(ctx context.Context) {
	kr := m.Keyring()
	if kr == nil || m.down.Load() {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kr.Reload(rctx); err != nil {
		m.Log.Warn("reload data keys failed; keeping the loaded ones", slog.String("error", err.Error()))
	}
}
