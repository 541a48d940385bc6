package tokenizer

import (
	"fmt"
	"regexp"
	"time"

	"github.com/phivault/tokenizer/internal/format"
)

// Mode says whether a value always gets the same token.
type Mode string

// Modes of a class.
const (
	// Static classes give the same value (in the same scope) the same token, always.
	Static Mode = "static"
	// Dynamic classes give a fresh token on every call.
	Dynamic Mode = "dynamic"
)

// Generator says how static tokens are made.
type Generator string

// Generators of static tokens.
const (
	// Random tokens are drawn at first sight and reused through a keyed fingerprint.
	Random Generator = "random"
	// FPE tokens are FF1 of the value under the class key.
	FPE Generator = "fpe"
)

// ClassConfig is a token class as configured.
type ClassConfig struct {
	Name      string        `yaml:"name"`
	Format    string        `yaml:"format"`
	Mode      Mode          `yaml:"mode"`
	Generator Generator     `yaml:"generator"`
	TTL       time.Duration `yaml:"ttl"`
	// Distinguishable defaults to true where the format supports it.
	Distinguishable *bool `yaml:"distinguishable"`
	PreservePrefix  int   `yaml:"preserve_prefix"`
	PreserveSuffix  int   `yaml:"preserve_suffix"`
	MinLength       int   `yaml:"min_length"`
	MaxLength       int   `yaml:"max_length"`
}

// Class is a compiled token class.
type Class struct {
	ClassConfig
	format format.Format
}

// Format returns the class's format.
func (c *Class) FormatImpl() format.Format { return c.format }

var classNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ValidClassName reports whether s can name a class; only such names are ever echoed
// in errors, so that a value sent in the class field is never repeated back.
func ValidClassName(s string) bool { return classNameRE.MatchString(s) }

// Compile checks a class configuration and builds its format. Errors name the class
// and the setting.
func Compile(cfg ClassConfig) (*Class, error) {
	if !ValidClassName(cfg.Name) {
		return nil, fmt.Errorf("class name %q: use 1-63 lowercase letters, digits or _, starting with a letter", cfg.Name)
	}
	if cfg.Format == "" {
		return nil, fmt.Errorf("class %s: format is required", cfg.Name)
	}
	if cfg.Mode == "" {
		cfg.Mode = Static
	}
	switch cfg.Mode {
	case Static:
		if cfg.Generator == "" {
			cfg.Generator = Random
		}
		if cfg.Generator != Random && cfg.Generator != FPE {
			return nil, fmt.Errorf("class %s: generator %q: want random or fpe", cfg.Name, cfg.Generator)
		}
	case Dynamic:
		if cfg.Generator != "" && cfg.Generator != Random {
			return nil, fmt.Errorf("class %s: generator %q applies to static classes only; dynamic tokens are random", cfg.Name, cfg.Generator)
		}
		cfg.Generator = Random
	default:
		return nil, fmt.Errorf("class %s: mode %q: want static or dynamic", cfg.Name, cfg.Mode)
	}
	if cfg.Generator == FPE {
		return nil, fmt.Errorf("class %s: generator fpe is not available in this build yet", cfg.Name)
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("class %s: ttl must not be negative", cfg.Name)
	}
	if cfg.PreservePrefix < 0 || cfg.PreserveSuffix < 0 {
		return nil, fmt.Errorf("class %s: preserve_prefix and preserve_suffix must not be negative", cfg.Name)
	}
	distinguishable := true
	if cfg.Distinguishable != nil {
		distinguishable = *cfg.Distinguishable
	}
	f, err := format.New(cfg.Format, format.Options{Distinguishable: distinguishable, MinLen: cfg.MinLength, MaxLen: cfg.MaxLength})
	if err != nil {
		return nil, fmt.Errorf("class %s: format: %w", cfg.Name, err)
	}
	d := f.Distinguishable()
	cfg.Distinguishable = &d
	return &Class{ClassConfig: cfg, format: f}, nil
}
