package tokenizer

import (
	"fmt"
	"regexp"
	"sync"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/format"
)

// Mode says whether a value always gets the same token.
type Mode = string

// Modes of a class.
const (
	// Static classes give the same value (in the same scope) the same token, always.
	Static Mode = "static"
	// Dynamic classes give a fresh token on every call.
	Dynamic Mode = "dynamic"
)

// Generator says how static tokens are made.
type Generator = string

// Generators of static tokens.
const (
	// Random tokens are drawn at first sight and reused through a keyed fingerprint.
	Random Generator = "random"
	// FPE tokens are FF1 of the value under the class key.
	FPE Generator = "fpe"
)

// ClassConfig is a token class as configured (a setting of the service).
type ClassConfig = config.Class

// Class is a compiled token class.
type Class struct {
	ClassConfig
	format  format.Format
	layouts sync.Map // core length → *layout
}

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
	if err := modeAndGenerator(&cfg); err != nil {
		return nil, err
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("class %s: ttl must not be negative", cfg.Name)
	}
	if err := checkStorage(cfg); err != nil {
		return nil, err
	}
	if cfg.PreservePrefix < 0 || cfg.PreserveSuffix < 0 {
		return nil, fmt.Errorf("class %s: preserve_prefix and preserve_suffix must not be negative", cfg.Name)
	}
	switch cfg.EmailDomain {
	case "", "keep", "tokenize":
	default:
		return nil, fmt.Errorf("class %s: email_domain %q: want keep or tokenize", cfg.Name, cfg.EmailDomain)
	}
	// Distinguishable tokens are the default where the format supports them. FF1 maps
	// the values' domain onto itself, so fpe tokens cannot be kept apart from values.
	supported := format.SupportsDistinguishable(cfg.Format)
	distinguishable := supported && cfg.Generator != FPE
	if cfg.Distinguishable != nil {
		if *cfg.Distinguishable && !supported {
			return nil, fmt.Errorf("class %s: format %s cannot make distinguishable tokens; set distinguishable: false", cfg.Name, cfg.Format)
		}
		if *cfg.Distinguishable && cfg.Generator == FPE {
			return nil, fmt.Errorf("class %s: distinguishable tokens need the random generator (FF1 maps the value domain onto itself); set distinguishable: false or generator: random", cfg.Name)
		}
		distinguishable = *cfg.Distinguishable
	}
	if distinguishable && cfg.PreservePrefix > 0 {
		switch cfg.Format {
		case "ssn", "npi", "date", "phone":
			return nil, fmt.Errorf("class %s: distinguishable %s tokens differ from values in their first characters, so preserve_prefix must be 0", cfg.Name, cfg.Format)
		}
	}
	f, err := format.New(cfg.Format, format.Options{
		Distinguishable: distinguishable, MinLen: cfg.MinLength, MaxLen: cfg.MaxLength,
		TokenizeDomain: cfg.EmailDomain == "tokenize",
	})
	if err != nil {
		return nil, fmt.Errorf("class %s: format: %w", cfg.Name, err)
	}
	d := f.Distinguishable()
	cfg.Distinguishable = &d
	if cfg.MaskKeepLast == nil {
		keep := 4
		cfg.MaskKeepLast = &keep
	}
	if *cfg.MaskKeepLast < 0 {
		return nil, fmt.Errorf("class %s: mask_keep_last must not be negative", cfg.Name)
	}
	c := &Class{ClassConfig: cfg, format: f}
	if cfg.Generator == FPE {
		if err := checkFPEDomain(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// modeAndGenerator fills the defaults (static, random) and checks the pair.
func modeAndGenerator(cfg *ClassConfig) error {
	if cfg.Mode == "" {
		cfg.Mode = Static
	}
	switch cfg.Mode {
	case Static:
		if cfg.Generator == "" {
			cfg.Generator = Random
		}
		if cfg.Generator != Random && cfg.Generator != FPE {
			return fmt.Errorf("class %s: generator %q: want random or fpe", cfg.Name, cfg.Generator)
		}
	case Dynamic:
		if cfg.Generator != "" && cfg.Generator != Random {
			return fmt.Errorf("class %s: generator %q applies to static classes only; dynamic tokens are random", cfg.Name, cfg.Generator)
		}
		cfg.Generator = Random
	default:
		return fmt.Errorf("class %s: mode %q: want static or dynamic", cfg.Name, cfg.Mode)
	}
	return nil
}

// Storage values of a class.
const (
	StorageVault = "vault"
	StorageNone  = "none"
)

// checkStorage allows storage none only where a token can be found again without the
// vault: FF1 of the value. What the class then gives up is said in the message.
func checkStorage(cfg ClassConfig) error {
	switch cfg.Storage {
	case "", StorageVault:
		return nil
	case StorageNone:
	default:
		return fmt.Errorf("class %s: storage %q: want vault or none", cfg.Name, cfg.Storage)
	}
	if cfg.Mode != Static || cfg.Generator != FPE {
		return fmt.Errorf("class %s: storage none needs mode static and generator fpe: only an FF1 token can be decrypted without the token vault", cfg.Name)
	}
	if cfg.TTL > 0 {
		return fmt.Errorf("class %s: storage none keeps no row, so its tokens cannot expire: remove ttl", cfg.Name)
	}
	return nil
}

// stores reports whether the class keeps a row per value.
func (c *Class) stores() bool { return c.Storage != StorageNone }
