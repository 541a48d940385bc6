package bulk

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress reports a running job on w: a bar (rows, rows/s, bytes, ETA from the input
// size) when w is a terminal, else a plain line every Interval.
type Progress struct {
	W        io.Writer
	TTY      bool
	Interval time.Duration
}

// start reports until the returned function is called.
func (p *Progress) start(size int64, read, records *atomic.Int64) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if p.TTY {
			p.bar(stop, size, read, records)
		} else {
			p.lines(stop, size, read, records)
		}
	}()
	return func() { close(stop); wg.Wait() }
}

func (p *Progress) bar(stop <-chan struct{}, size int64, read, records *atomic.Int64) {
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(p.W),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetDescription("rows 0"),
	)
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	update := func(final bool) {
		n := records.Load()
		bar.Describe(fmt.Sprintf("rows %d (%.0f rows/s)", n, float64(n)/max(time.Since(start).Seconds(), 1e-3)))
		b := read.Load()
		if !final && size > 0 {
			// The input is read ahead of the rows done: a full bar would end it early.
			b = min(b, size-1)
		}
		_ = bar.Set64(b)
	}
	for {
		select {
		case <-stop:
			update(true)
			_ = bar.Finish()
			fmt.Fprintln(p.W)
			return
		case <-tick.C:
			update(false)
		}
	}
}

func (p *Progress) lines(stop <-chan struct{}, size int64, read, records *atomic.Int64) {
	interval := p.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	report := func() {
		el := time.Since(start)
		n, b := records.Load(), read.Load()
		line := fmt.Sprintf("progress: rows=%d rows_per_sec=%.0f bytes=%d", n, float64(n)/max(el.Seconds(), 1e-3), b)
		if size > 0 {
			line += fmt.Sprintf(" of=%d pct=%.1f", size, 100*float64(b)/float64(size))
			if b > 0 {
				eta := time.Duration(float64(el) * float64(size-b) / float64(b))
				line += " eta=" + eta.Round(time.Second).String()
			}
		}
		fmt.Fprintln(p.W, line)
	}
	for {
		select {
		case <-stop:
			report() // the last state, so that even a short job reports once
			return
		case <-tick.C:
			report()
		}
	}
}

// WriteSummary prints the closing summary of a job.
func WriteSummary(w io.Writer, s Summary) {
	classes := make([]string, 0, len(s.Values))
	for c := range s.Values {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var per []string
	for _, c := range classes {
		per = append(per, fmt.Sprintf("%s=%d", c, s.Values[c]))
	}
	fmt.Fprintf(w, "summary: rows=%d written=%d rejects=%d values[%s] elapsed=%s rows_per_sec=%.0f\n",
		s.Records, s.Rows, s.Rejects, strings.Join(per, " "), s.Elapsed.Round(time.Millisecond), s.RowsPerSec())
}
