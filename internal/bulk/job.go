package bulk

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Operation is what a job does to the mapped values.
type Operation string

// The operations.
const (
	Tokenize   Operation = "tokenize"
	Detokenize Operation = "detokenize"
)

// Mapping sends one column (CSV/TSV) or path (NDJSON) to a token class.
type Mapping struct {
	Field string `yaml:"field"`
	Class string `yaml:"class"`
}

// Job is one file job. Flags and a YAML job file fill the same fields.
type Job struct {
	Operation      Operation `yaml:"operation"`
	Format         string    `yaml:"format"` // csv, tsv, ndjson; guessed from the input name
	Input          string    `yaml:"input"`  // a file, or "-" for standard input
	Output         string    `yaml:"output"` // a file, or "-" for standard output
	Columns        []Mapping `yaml:"columns"`
	Profile        string    `yaml:"profile"` // fhir-ndjson: the FHIR profile (docs/fhir.md)
	Purpose        string    `yaml:"purpose"` // detokenize: HL7 v3 PurposeOfUse
	Justification  string    `yaml:"justification"`
	Delimiter      string    `yaml:"delimiter"`
	Quote          string    `yaml:"quote"`
	RejectFile     string    `yaml:"reject_file"`     // default: <output>.rejects.csv
	Checkpoint     string    `yaml:"checkpoint_file"` // default: <output>.checkpoint
	MaxRejects     int       `yaml:"-"`               // stop when rejects exceed this; -1: never
	BatchItems     int       `yaml:"batch_items"`     // values per request
	Concurrency    int       `yaml:"concurrency"`     // requests in flight
	CheckpointRows int       `yaml:"checkpoint_rows"` // rows between checkpoints
	Resume         bool      `yaml:"-"`
}

// ParseMapping reads "column=class".
func ParseMapping(s string) (Mapping, error) {
	field, class, ok := strings.Cut(s, "=")
	if !ok || field == "" || class == "" {
		return Mapping{}, fmt.Errorf("--column %q: want column=class", s)
	}
	return Mapping{Field: field, Class: class}, nil
}

// LoadJobFile reads a YAML job file into j; fields already set in j (from flags) win.
func LoadJobFile(path string, j *Job) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var file struct {
		Job        `yaml:",inline"`
		MaxRejects *int `yaml:"max_rejects"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		return fmt.Errorf("job file %s: %v", path, err)
	}
	f := file.Job
	if file.MaxRejects != nil && j.MaxRejects < 0 {
		j.MaxRejects = *file.MaxRejects
	}
	merge := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	for _, p := range []struct {
		dst *string
		v   string
	}{
		{&j.Format, f.Format}, {&j.Input, f.Input}, {&j.Output, f.Output}, {&j.Purpose, f.Purpose},
		{&j.Justification, f.Justification}, {&j.Delimiter, f.Delimiter}, {&j.Quote, f.Quote},
		{&j.RejectFile, f.RejectFile}, {&j.Checkpoint, f.Checkpoint}, {&j.Profile, f.Profile},
	} {
		merge(p.dst, p.v)
	}
	if f.Operation != "" && f.Operation != j.Operation {
		return fmt.Errorf("job file %s: operation %q does not match the command (%s)", path, f.Operation, j.Operation)
	}
	if len(j.Columns) == 0 {
		j.Columns = f.Columns
	}
	for _, p := range []struct {
		dst *int
		v   int
	}{
		{&j.BatchItems, f.BatchItems}, {&j.Concurrency, f.Concurrency}, {&j.CheckpointRows, f.CheckpointRows},
	} {
		if *p.dst == 0 {
			*p.dst = p.v
		}
	}
	return nil
}

// complete fills defaults and checks the job.
func (j *Job) complete() error {
	if j.Operation != Tokenize && j.Operation != Detokenize {
		return fmt.Errorf("operation %q: want tokenize or detokenize", j.Operation)
	}
	if j.Input == "" {
		j.Input = "-"
	}
	if j.Output == "" {
		j.Output = "-"
	}
	if j.Format == "" {
		j.Format = formatFromName(j.Input)
		if j.Format == "" {
			j.Format = formatFromName(j.Output)
		}
		if j.Format == "" {
			return fmt.Errorf("format: cannot tell from the file names; give --format (%s)", strings.Join(FormatNames(), ", "))
		}
	}
	if err := j.completeMapping(); err != nil {
		return err
	}
	if j.Operation == Detokenize && j.Purpose == "" {
		return errors.New("purpose: required for detokenize (an HL7 v3 PurposeOfUse code such as TREAT)")
	}
	if j.Resume && j.Output == "-" {
		return errors.New("resume: needs an output file, not standard output")
	}
	if j.BatchItems <= 0 {
		j.BatchItems = 1000
		if j.Format == FormatFHIRNDJSON {
			j.BatchItems = fhirBatchItems
		}
	}
	if j.Concurrency <= 0 {
		j.Concurrency = 4
	}
	if j.CheckpointRows <= 0 {
		j.CheckpointRows = 50000
	}
	if j.Output != "-" {
		if j.RejectFile == "" {
			j.RejectFile = j.Output + ".rejects.csv"
		}
		if j.Checkpoint == "" {
			j.Checkpoint = j.Output + ".checkpoint"
		}
	}
	return nil
}

// completeMapping checks what maps values to the service: columns for the record
// formats, a profile for FHIR NDJSON (an .ndjson file with a profile is FHIR NDJSON).
func (j *Job) completeMapping() error {
	if j.Profile != "" && j.Format == "ndjson" && len(j.Columns) == 0 {
		j.Format = FormatFHIRNDJSON
	}
	switch {
	case j.Format == FormatFHIRNDJSON && j.Profile == "":
		return errors.New("profile: required for fhir-ndjson (--profile safe_harbor, limited_data_set or a configured profile)")
	case j.Format == FormatFHIRNDJSON && len(j.Columns) > 0:
		return errors.New("--column does not apply to fhir-ndjson: the profile says what each resource's fields become")
	case j.Format != FormatFHIRNDJSON && j.Profile != "":
		return fmt.Errorf("--profile applies to fhir-ndjson only, not to %s", j.Format)
	case j.Format != FormatFHIRNDJSON && len(j.Columns) == 0:
		return errors.New("no columns mapped: give --column name=class or a job file")
	}
	return nil
}
