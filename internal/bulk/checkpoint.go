package bulk

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// checkpoint is where a job stood after its last durable write: how much of the
// (decompressed) input it consumed, how long the output and reject files were, and
// the counts so far. Checkpoints fall on batch boundaries every CheckpointRows rows, the
// same places in every run, which is what makes a resumed output byte-identical.
type checkpoint struct {
	Version     int            `json:"version"`
	Job         string         `json:"job"` // digest of what decides the output
	InputOffset int64          `json:"input_offset"`
	Records     int64          `json:"records"`
	Rows        int64          `json:"rows"`
	OutputBytes int64          `json:"output_bytes"`
	RejectBytes int64          `json:"reject_bytes"`
	Rejects     int64          `json:"rejects"`
	Values      map[string]int `json:"values"`
	RowGroups   int            `json:"row_groups,omitempty"` // Parquet: row groups done
}

// jobDigest identifies the settings a checkpoint is valid for.
func jobDigest(j *Job) string {
	settings := []any{j.Operation, j.Format, j.Input, j.Output, j.Columns, j.Delimiter, j.Quote, j.BatchItems, j.CheckpointRows}
	if j.Profile != "" {
		settings = append(settings, j.Profile)
	}
	b, _ := json.Marshal(settings)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func readCheckpoint(path, digest string) (*checkpoint, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("resume: no checkpoint at %s (the job finished, or never started)", path)
		}
		return nil, err
	}
	var c checkpoint
	if err := json.Unmarshal(raw, &c); err != nil || c.Version != 1 {
		return nil, fmt.Errorf("resume: %s is not a checkpoint file", path)
	}
	if c.Job != digest {
		return nil, fmt.Errorf("resume: %s belongs to a job with other settings (input, output, columns, format or batch size differ)", path)
	}
	return &c, nil
}

// write replaces the checkpoint file atomically.
func (c *checkpoint) write(path string) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".checkpoint-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
