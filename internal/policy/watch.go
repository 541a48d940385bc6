package policy

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Watch reloads the policy file on SIGHUP and when it changes on disk (checked every
// second) until ctx ends. A file that does not load keeps the policy in force; the log
// says why and onReload (when set) learns the outcome.
func (s *Store) Watch(ctx context.Context, log *slog.Logger, onReload func(error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
			if !s.Changed() {
				continue
			}
		}
		err := s.Reload()
		if err != nil {
			log.Error("policy reload failed; keeping the policy in force", slog.String("error", err.Error()))
		} else {
			log.Info("policy reloaded")
		}
		if onReload != nil {
			onReload(err)
		}
	}
}
