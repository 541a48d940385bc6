package bulk_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// staticCSV makes rows with the three columns of the throughput goal (SSN, MRN, name).
func staticCSV(rows int) []byte {
	r := rand.New(rand.NewPCG(11, 13))
	var b bytes.Buffer
	b.WriteString("id,ssn,mrn,name,visit\n")
	for i := range rows {
		fmt.Fprintf(&b, "%d,%s,MRN-%08d,\"%s\",%d\n", i+1, ssn(r), r.IntN(1e8), name(r), r.IntN(1000))
	}
	return b.Bytes()
}

var resumeArgs = []string{"--column", "ssn=ssn", "--column", "mrn=mrn", "--column", "name=name",
	"--batch", "300", "--concurrency", "2", "--checkpoint-rows", "1500", "--progress", "none"}

// TestResumeAfterSIGKILL kills a job at a random point, resumes it, and gets output
// byte-identical to an uninterrupted run (gzip output: checkpoints end gzip members).
func TestResumeAfterSIGKILL(t *testing.T) {
	s := startService(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	require.NoError(t, os.WriteFile(in, staticCSV(30000), 0o600))
	whole := filepath.Join(dir, "whole.csv.gz")
	res := s.client(t, append([]string{"tokenize-file", "--input", in, "--output", whole}, resumeArgs...)...)
	require.Equal(t, 0, res.code, res.stderr)
	_, err := os.Stat(whole + ".checkpoint")
	assert.ErrorIs(t, err, os.ErrNotExist, "a finished job leaves no checkpoint")

	out := filepath.Join(dir, "killed.csv.gz")
	s.killMidJob(t, append([]string{"tokenize-file", "--input", in, "--output", out}, resumeArgs...), out, 30000, 400*time.Millisecond)
	wholeBytes, err := os.ReadFile(whole)
	require.NoError(t, err)

	res = s.client(t, append([]string{"tokenize-file", "--input", in, "--output", out, "--resume"}, resumeArgs...)...)
	require.Equal(t, 0, res.code, res.stderr)
	resumed, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(wholeBytes, resumed), "resumed output is byte-identical to the uninterrupted one")
	assert.Equal(t, 30001, bytes.Count(decompress(t, out), []byte("\n")), "no row lost or duplicated")

	// Nothing is left to resume once done.
	res = s.client(t, append([]string{"tokenize-file", "--input", in, "--output", out, "--resume"}, resumeArgs...)...)
	assert.Equal(t, 1, res.code)
	assert.Contains(t, res.stderr, "no checkpoint")
}

// killMidJob starts the client with args, SIGKILLs it at a random moment (up to
// maxDelay) after its first checkpoint, and checks that the checkpoint stands mid-file.
func (s *service) killMidJob(t *testing.T, args []string, out string, records int64, maxDelay time.Duration) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	killed := false
	for attempt := 0; attempt < 5 && !killed; attempt++ {
		cmd := exec.Command(binary, append(args, "--insecure", "--grpc", s.grpc)...)
		require.NoError(t, cmd.Start())
		require.Eventually(t, func() bool { _, err := os.Stat(out + ".checkpoint"); return err == nil }, 60*time.Second, 2*time.Millisecond)
		delay := time.Duration(rng.Int64N(int64(maxDelay)))
		t.Logf("attempt %d: SIGKILL %v after the first checkpoint", attempt, delay)
		time.Sleep(delay)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		err := cmd.Wait()
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		killed = ok && ws.Signaled() && err != nil
	}
	require.True(t, killed, "the job was killed mid-file")
	raw, err := os.ReadFile(out + ".checkpoint")
	require.NoError(t, err)
	var ck struct {
		Records int64 `json:"records"`
	}
	require.NoError(t, json.Unmarshal(raw, &ck))
	t.Logf("killed with %d of %d records checkpointed", ck.Records, records)
	require.True(t, ck.Records > 0 && ck.Records < records, "killed mid-file")
}

// TestProgress shows a bar on a terminal and plain lines otherwise, and a summary.
func TestProgress(t *testing.T) {
	s := startService(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	require.NoError(t, os.WriteFile(in, staticCSV(5000), 0o600))
	args := []string{"tokenize-file", "--input", in, "--column", "ssn=ssn", "--batch", "200", "--concurrency", "1",
		"--progress-interval", "20ms", "--insecure", "--grpc", s.grpc}

	t.Run("terminal", func(t *testing.T) {
		cmd := exec.Command(binary, append(args, "--output", filepath.Join(dir, "tty.csv"))...)
		ptmx, tty, err := pty.Open()
		require.NoError(t, err)
		defer ptmx.Close()
		cmd.Stderr = tty
		require.NoError(t, cmd.Start())
		tty.Close()
		var out bytes.Buffer
		copied := make(chan struct{})
		go func() { _, _ = io.Copy(&out, ptmx); close(copied) }()
		require.NoError(t, cmd.Wait())
		select {
		case <-copied:
		case <-time.After(5 * time.Second):
		}
		o := out.String()
		assert.Contains(t, o, "\r", "the bar redraws in place")
		assert.Contains(t, o, "100%")
		assert.Contains(t, o, "rows 5000")
		assert.Contains(t, o, "rows/s")
		assert.NotContains(t, o, "progress: rows=", "no plain lines on a terminal")
		assert.Contains(t, o, "summary: rows=5000 written=5000")
	})
	t.Run("pipe", func(t *testing.T) {
		cmd := exec.Command(binary, append(args, "--output", filepath.Join(dir, "pipe.csv"))...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		require.NoError(t, cmd.Run())
		o := errb.String()
		assert.NotContains(t, o, "\r")
		assert.NotContains(t, o, "%|", "no bar off a terminal")
		lines := strings.Split(strings.TrimSpace(o), "\n")
		require.GreaterOrEqual(t, len(lines), 3)
		assert.Regexp(t, `^progress: rows=5000 rows_per_sec=\d+ bytes=\d+ of=\d+ pct=100\.0 eta=0s$`, lines[len(lines)-3])
		assert.Contains(t, lines[len(lines)-2], "summary: rows=5000 written=5000 rejects=0 values[ssn=5000]")
		assert.Regexp(t, `^client peak RSS: \d+\.\d MiB$`, lines[len(lines)-1])
	})
}
