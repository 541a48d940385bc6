// Package config loads the service configuration: flags, then TOKENIZER_* environment,
// then an optional YAML file, then defaults. The first source that sets a value wins.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultFile is read when no configuration file is named.
const DefaultFile = "tokenizer.yaml"

// Config is every setting of the service.
type Config struct {
	// File is the configuration file read, if any.
	File string `yaml:"-" flag:"-"`

	// Dev enables development mode: the local key provider, migrations at start, the
	// tokenizer database created if missing, text logs.
	Dev bool `yaml:"dev" usage:"development mode: local keys, auto-migrate, text logs (not for PHI)"`
	// Insecure serves plaintext and gives every caller the identity dev with the
	// development policy. It is separate from Dev (development keys).
	Insecure  bool   `yaml:"insecure" usage:"plaintext, every caller is dev with the development policy (never for PHI)"`
	GRPCAddr  string `yaml:"grpc_addr" usage:"gRPC listen address"`
	HTTPAddr  string `yaml:"http_addr" usage:"REST gateway listen address"`
	AdminAddr string `yaml:"admin_addr" usage:"admin listen address (/metrics, /healthz, /readyz)"`
	// Pprof serves the Go profiler on the admin port (off by default).
	Pprof bool `yaml:"pprof" usage:"serve /debug/pprof/ (CPU, heap, block, mutex profiles) on the admin port"`

	TLS        TLSConfig `yaml:"tls"`
	PolicyFile string    `yaml:"policy_file" usage:"policy file (YAML): who may do what; reloaded on SIGHUP and on change"`
	// Reflection serves gRPC server reflection (always on in development mode).
	Reflection bool `yaml:"reflection" usage:"serve gRPC reflection (on in dev mode; off by default otherwise)"`
	// TrustedProxies are the peers (comma-separated CIDRs) whose x-forwarded-for is
	// believed; the in-process REST gateway is always trusted.
	TrustedProxies string `yaml:"trusted_proxies" usage:"comma-separated CIDRs of proxies whose x-forwarded-for is trusted"`

	Log      LogConfig      `yaml:"log"`
	Database DatabaseConfig `yaml:"database"`
	Keys     KeysConfig     `yaml:"keys"`
	Limits   LimitsConfig   `yaml:"limits"`
	Audit    AuditConfig    `yaml:"audit"`
	FHIR     FHIRConfig     `yaml:"fhir"`
	Cache    CacheConfig    `yaml:"cache"`
	Coalesce CoalesceConfig `yaml:"coalesce"`
	Subjects SubjectsConfig `yaml:"subjects"`
	Grants   GrantsConfig   `yaml:"grants"`

	// MemoryLimit is the Go runtime's soft memory limit for serve (MemoryLimitBytes).
	MemoryLimit string `yaml:"memory_limit" usage:"soft memory limit of serve, e.g. 256MiB (0: none; default 80 MiB plus 1 KiB per cache entry; the GOMEMLIMIT variable, when set, wins)"`

	RequestTimeout  time.Duration `yaml:"request_timeout" usage:"deadline for one request's work"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" usage:"how long in-flight requests may take to finish on SIGTERM"`

	// Classes are the token classes; when none are configured the development set
	// (DefaultClasses) is served.
	Classes []Class `yaml:"classes" flag:"-"`

	// Warnings are things Load noticed that are allowed but unwise (secrets given as
	// flags); serve logs them.
	Warnings []string `yaml:"-" flag:"-"`
}

// TLSConfig is the mTLS of the gRPC and REST ports.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file" usage:"server certificate (PEM), reloaded on change"`
	KeyFile      string `yaml:"key_file" usage:"server private key (PEM), reloaded on change"`
	ClientCAFile string `yaml:"client_ca_file" usage:"CA bundle that client certificates must chain to, reloaded on change"`
}

// LogConfig sets up logging.
type LogConfig struct {
	Level  string `yaml:"level" usage:"debug, info, warn or error"`
	Format string `yaml:"format" usage:"json or text (default: text in dev mode, json otherwise)"`
}

// DatabaseConfig is the token vault's PostgreSQL.
type DatabaseConfig struct {
	URL            string        `yaml:"url" sensitive:"url" usage:"PostgreSQL URL"`
	MaxConns       int           `yaml:"max_conns" usage:"connection pool size"`
	ConnectTimeout time.Duration `yaml:"connect_timeout" usage:"timeout for each new database connection"`
}

// KeysConfig selects the key provider.
type KeysConfig struct {
	Provider  string `yaml:"provider" usage:"local (development only) or vault (default: local with --dev, else vault)"`
	LocalFile string `yaml:"local_file" usage:"key file of the local provider (created if missing)"`
	// CheckInterval is how often the provider is checked; while it fails, requests fail
	// closed with UNAVAILABLE (sealing Vault stops every reveal).
	CheckInterval time.Duration `yaml:"check_interval" usage:"how often the key provider is checked (requests fail while it is down)"`
	// ReloadInterval is how often stored data keys are re-read (rotations, rewraps).
	ReloadInterval time.Duration `yaml:"reload_interval" usage:"how often stored data keys are re-read"`
	Vault          VaultConfig   `yaml:"vault"`
}

// LimitsConfig bounds requests.
type LimitsConfig struct {
	MaxItems        int `yaml:"max_items" usage:"items per request"`
	MaxValueBytes   int `yaml:"max_value_bytes" usage:"bytes per value or token"`
	MaxMessageBytes int `yaml:"max_message_bytes" usage:"bytes per request message"`
	// Stream and connection bounds (docs/security.md): they bound what one client
	// certificate can hold open, and how long a revoked one keeps working.
	MaxStreamsPerConnection  int           `yaml:"max_streams_per_connection" usage:"concurrent streams (and calls) per connection"`
	MaxStreamsPerPrincipal   int           `yaml:"max_streams_per_principal" usage:"concurrent streams per caller identity"`
	StreamIdleTimeout        time.Duration `yaml:"stream_idle_timeout" usage:"a stream with no message for this long is closed"`
	ReadIdleTimeout          time.Duration `yaml:"read_idle_timeout" usage:"REST: a request whose body sends no byte for this long is cut off, and an idle keep-alive connection closed"`
	ReadBodyTimeout          time.Duration `yaml:"read_body_timeout" usage:"REST: a request body (other than a stream's) not complete this long after the request started is cut off"`
	MaxConnectionAge         time.Duration `yaml:"max_connection_age" usage:"connections are closed after this age (a revoked certificate stops within it)"`
	UnknownRequestsPerSecond int           `yaml:"unknown_requests_per_second" usage:"request rate shared by all callers with no policy entry"`
}

// AuditConfig sets up the audit log's checkpoints.
type AuditConfig struct {
	CheckpointEvery    int           `yaml:"checkpoint_every" usage:"sign a checkpoint after this many events"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval" usage:"sign a checkpoint at least this often (when there are new events)"`
	// CheckpointSink is where checkpoints are copied outside the database: "stdout",
	// "none", or a file path (appended to).
	CheckpointSink string        `yaml:"checkpoint_sink" usage:"stdout, none, or a file that checkpoints are appended to"`
	WriteTimeout   time.Duration `yaml:"write_timeout" usage:"how long an audit append may take before the request fails"`
}

// CacheConfig sizes the in-process cache of token mappings (rows as stored: values and
// tokens only encrypted). Replicas invalidate each other's entries through PostgreSQL
// LISTEN/NOTIFY; TTL bounds how long a replica may answer from an entry when that feed
// fails.
type CacheConfig struct {
	Entries int           `yaml:"entries" usage:"mappings cached per index (by token, by value); 0 turns the cache off"`
	TTL     time.Duration `yaml:"ttl" usage:"the longest a cached mapping is trusted (bounds staleness if invalidations are lost)"`
}

// CoalesceConfig merges concurrent small token-vault reads and writes into one
// statement: while a statement runs, calls of the same operation queue for the next,
// which goes when the running one ends, after Window, or at MaxItems items.
type CoalesceConfig struct {
	Window   time.Duration `yaml:"window" usage:"longest a token-vault call waits to share a statement with concurrent ones; 0 turns coalescing off"`
	MaxItems int           `yaml:"max_items" usage:"items per merged token-vault statement; a request with this many items goes alone"`
}

// FHIRConfig sets up FHIR de-identification (docs/fhir.md).
type FHIRConfig struct {
	// DateShiftDays bounds each patient's random date shift: ±1..DateShiftDays days.
	DateShiftDays int `yaml:"date_shift_days" usage:"each patient's date shift is drawn within ±this many days (never 0)"`
	// Profiles are the configured profiles (YAML, docs/fhir.md), beside the presets
	// safe_harbor and limited_data_set; internal/fhir compiles them.
	Profiles yaml.Node `yaml:"profiles" flag:"-"`
}

// Defaults returns the configuration used where nothing else sets a value.
func Defaults() *Config {
	return &Config{
		GRPCAddr:  "127.0.0.1:9090",
		HTTPAddr:  "127.0.0.1:8080",
		AdminAddr: "127.0.0.1:9102",
		Log:       LogConfig{Level: "info"},
		Database: DatabaseConfig{
			URL:            "postgres://postgres@127.0.0.1:5432/tokenizer?sslmode=disable",
			MaxConns:       16,
			ConnectTimeout: 3 * time.Second,
		},
		Keys:            KeysConfig{LocalFile: ".tokenizer/dev-kek.hex", CheckInterval: 2 * time.Second, ReloadInterval: 30 * time.Second},
		Limits:          LimitsConfig{MaxItems: 1000, MaxValueBytes: 1024, MaxMessageBytes: 4 << 20, MaxStreamsPerConnection: 100, MaxStreamsPerPrincipal: 256, StreamIdleTimeout: 5 * time.Minute, ReadIdleTimeout: 30 * time.Second, ReadBodyTimeout: time.Minute, MaxConnectionAge: time.Hour, UnknownRequestsPerSecond: 10},
		Audit:           AuditConfig{CheckpointEvery: 1000, CheckpointInterval: time.Minute, CheckpointSink: "stdout", WriteTimeout: 5 * time.Second},
		FHIR:            FHIRConfig{DateShiftDays: 365},
		Cache:           CacheConfig{Entries: 50000, TTL: 30 * time.Second},
		Coalesce:        CoalesceConfig{Window: time.Millisecond, MaxItems: 256},
		RequestTimeout:  10 * time.Second,
		ShutdownTimeout: 30 * time.Second,
	}
}

// DefaultClasses is the development class set, served when no classes are configured.
func DefaultClasses() []Class {
	static := func(name, format string) Class {
		return Class{Name: name, Format: format, Mode: "static", Generator: "random"}
	}
	return []Class{
		static("ssn", "ssn"),
		static("phone", "phone"),
		static("email", "email"),
		static("name", "name"),
		static("date", "date"),
		static("npi", "npi"),
		static("credit_card", "credit_card"),
		static("mrn", "MRN-99999999"),
		// The classes of the FHIR presets (docs/fhir.md).
		static("fhir_id", "fhir_id"),
		static("fhir_name", "text"), // exact: Synthea-style names carry digits, and the round trip keeps case
		static("fhir_telecom", "text"),
		static("fhir_identifier", "text"),
		static("fhir_address", "text"),
		static("fhir_text", "text"),
		{Name: "ssn_fpe", Format: "ssn", Mode: "static", Generator: "fpe"},
		{Name: "ssn_vaultless", Format: "ssn", Mode: "static", Generator: "fpe", Storage: "none"},
		{Name: "ssn_dynamic", Format: "ssn", Mode: "dynamic"},
	}
}

// setting is one scalar field reachable from flags and environment.
type setting struct {
	key       string // dotted YAML path, e.g. database.url
	usage     string
	sensitive string // "true": the whole value is secret; "url": its password is
	field     reflect.Value
}

func (s setting) flagName() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(s.key)
}

func (s setting) envName() string {
	return "TOKENIZER_" + strings.ToUpper(strings.ReplaceAll(s.key, ".", "_"))
}

func collect(prefix string, v reflect.Value, out *[]setting) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Tag.Get("flag") == "-" || f.Tag.Get("yaml") == "-" {
			continue
		}
		key := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			collect(key+".", fv, out)
			continue
		}
		*out = append(*out, setting{key: key, usage: f.Tag.Get("usage"), sensitive: f.Tag.Get("sensitive"), field: fv})
	}
}

func (c *Config) settings() []setting {
	var out []setting
	collect("", reflect.ValueOf(c).Elem(), &out)
	return out
}

func (s setting) set(raw string) error {
	switch s.field.Interface().(type) {
	case string:
		s.field.SetString(raw)
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("want true or false")
		}
		s.field.SetBool(b)
	case int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return errors.New("want a whole number")
		}
		s.field.SetInt(int64(n))
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("want a duration such as 500ms or 10s")
		}
		s.field.SetInt(int64(d))
	default:
		return fmt.Errorf("unsupported setting type %s", s.field.Type())
	}
	return nil
}

// Load builds the configuration from args (flags after the subcommand), the
// environment and the YAML file named by --config or TOKENIZER_CONFIG.
// extra, when not nil, registers the subcommand's own flags.
func Load(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (*Config, error) {
	c := Defaults()
	settings := c.settings()
	fs, configPath, raw := newFlagSet(name, settings, stderr, extra)
	files := registerSecretFiles(fs, settings)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := c.readFile(*configPath, getenv); err != nil {
		return nil, err
	}
	for _, s := range settings {
		if v := getenv(s.envName()); v != "" {
			if err := s.set(v); err != nil {
				return nil, fmt.Errorf("%s: %w", s.envName(), err)
			}
		}
	}
	if err := files.applyEnv(settings, getenv); err != nil {
		return nil, err
	}
	var flagErr error
	fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if s.flagName() == f.Name && flagErr == nil {
				if err := s.set(*raw[s.key]); err != nil {
					flagErr = fmt.Errorf("--%s: %w", f.Name, err)
				}
				if w := secretFlagWarning(s, *raw[s.key]); w != "" {
					c.Warnings = append(c.Warnings, w)
				}
			}
		}
	})
	if flagErr != nil {
		return nil, flagErr
	}
	if err := files.applyFlags(settings); err != nil {
		return nil, err
	}
	c.complete()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// newFlagSet registers a flag per setting (raw holds what each was given) and
// --config, plus the command's own flags.
func newFlagSet(name string, settings []setting, stderr io.Writer, extra func(*flag.FlagSet)) (*flag.FlagSet, *string, map[string]*string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if extra != nil {
		extra(fs)
	}
	configPath := fs.String("config", "", "YAML configuration file (env TOKENIZER_CONFIG)")
	raw := map[string]*string{}
	for _, s := range settings {
		v := new(string)
		raw[s.key] = v
		if s.field.Kind() == reflect.Bool {
			// A boolean flag may stand alone ("--dev"), as in the flag package.
			fs.Var(&boolValue{v: v}, s.flagName(), s.usage+" (env "+s.envName()+")")
			continue
		}
		kind, def := s.kindAndDefault()
		switch {
		case s.sensitive == "url" && def != "":
			def = RedactURL(def)
		case s.sensitive != "":
			def = ""
		}
		fs.Var(&settingFlag{raw: v, def: def, kind: kind}, s.flagName(), s.usage+" (env "+s.envName()+")")
	}
	fs.Usage = func() { printUsage(fs.Output(), fs) }
	return fs, configPath, raw
}

// readFile reads the YAML file named by --config, else TOKENIZER_CONFIG, else a
// tokenizer.yaml in the working directory (so that every command run beside `make
// run` shares its configuration), if any.
func (c *Config) readFile(path string, getenv func(string) string) error {
	if path == "" {
		path = getenv("TOKENIZER_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat(DefaultFile); err == nil {
			path = DefaultFile
		}
	}
	c.File = path
	if path == "" {
		return nil
	}
	body, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(body))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// complete fills the defaults that depend on other settings.
func (c *Config) complete() {
	if len(c.Classes) == 0 {
		c.Classes = DefaultClasses()
	}
	if c.Keys.Provider == "" {
		c.Keys.Provider = "vault"
		if c.Dev {
			c.Keys.Provider = "local"
		}
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
		if c.Dev {
			c.Log.Format = "text"
		}
	}
}

type boolValue struct{ v *string }

func (b *boolValue) String() string {
	if b.v == nil || *b.v == "" {
		return "false"
	}
	return *b.v
}
func (b *boolValue) Set(s string) error { *b.v = s; return nil }
func (b *boolValue) IsBoolFlag() bool   { return true }

// Validate checks every setting; the error names the setting and what is wrong.
func (c *Config) Validate() error {
	var problems []string
	bad := func(key, format string, args ...any) {
		problems = append(problems, key+": "+fmt.Sprintf(format, args...))
	}
	if _, err := c.MemoryLimitBytes(); err != nil {
		bad("memory_limit", "%v", err)
	}
	for key, addr := range map[string]string{"grpc_addr": c.GRPCAddr, "http_addr": c.HTTPAddr, "admin_addr": c.AdminAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "want host:port, e.g. 127.0.0.1:9090")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "want debug, info, warn or error")
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "want json or text")
	}
	if u, err := url.Parse(c.Database.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		bad("database.url", "want a postgres:// URL")
	}
	if c.Database.MaxConns < 1 {
		bad("database.max_conns", "must be at least 1")
	}
	if c.Database.ConnectTimeout <= 0 {
		bad("database.connect_timeout", "must be positive")
	}
	if c.Keys.Provider != "local" && c.Keys.Provider != "vault" {
		bad("keys.provider", "want local or vault")
	}
	if c.Keys.CheckInterval <= 0 {
		bad("keys.check_interval", "must be positive")
	}
	if c.Keys.ReloadInterval <= 0 {
		bad("keys.reload_interval", "must be positive")
	}
	if c.Limits.MaxItems < 1 {
		bad("limits.max_items", "must be at least 1")
	}
	if c.Limits.MaxValueBytes < 1 {
		bad("limits.max_value_bytes", "must be at least 1")
	}
	if c.Limits.MaxMessageBytes < 1024 {
		bad("limits.max_message_bytes", "must be at least 1024")
	}
	if c.Audit.CheckpointEvery < 1 {
		bad("audit.checkpoint_every", "must be at least 1")
	}
	if c.Audit.CheckpointInterval <= 0 {
		bad("audit.checkpoint_interval", "must be positive")
	}
	if c.Audit.CheckpointSink == "" {
		bad("audit.checkpoint_sink", "want stdout, none or a file path")
	}
	if c.Audit.WriteTimeout <= 0 {
		bad("audit.write_timeout", "must be positive")
	}
	if c.RequestTimeout <= 0 {
		bad("request_timeout", "must be positive")
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	c.validateFeatures(bad)
	c.Subjects.defaults()
	problems = append(problems, c.Subjects.validate(c.Classes)...)
	c.Grants.defaults()
	problems = append(problems, c.Grants.validate()...)
	c.validateSecurity(bad)
	c.validateClassNames(bad)
	if len(problems) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

// validateClassNames refuses a class name defined twice.
func (c *Config) validateClassNames(bad func(key, format string, args ...any)) {
	seen := map[string]bool{}
	for i, cc := range c.Classes {
		if seen[cc.Name] {
			bad(fmt.Sprintf("classes[%d]", i), "class %s is defined twice", cc.Name)
		}
		seen[cc.Name] = true
	}
}

// validateFeatures checks the settings of the cache, coalescing and FHIR de-identification.
func (c *Config) validateFeatures(bad func(key, format string, args ...any)) {
	if c.Cache.Entries < 0 {
		bad("cache.entries", "must not be negative")
	}
	if c.Cache.Entries > 0 && c.Cache.TTL <= 0 {
		bad("cache.ttl", "must be positive when the cache is on")
	}
	if c.Coalesce.Window < 0 || c.Coalesce.Window > 100*time.Millisecond {
		bad("coalesce.window", "must be 0 (off) to 100ms")
	}
	if c.Coalesce.Window > 0 && c.Coalesce.MaxItems < 2 {
		bad("coalesce.max_items", "must be at least 2 when coalescing is on")
	}
	if c.FHIR.DateShiftDays < 1 || c.FHIR.DateShiftDays > 3650 {
		bad("fhir.date_shift_days", "must be 1 to 3650")
	}
}

// ValidateKeys checks the key provider's settings, for the commands that use keys
// (migrate does not).
func (c *Config) ValidateKeys() error {
	var problems []string
	bad := func(key, format string, args ...any) {
		problems = append(problems, key+": "+fmt.Sprintf(format, args...))
	}
	switch c.Keys.Provider {
	case "local":
		if !c.Dev {
			bad("keys.provider", "the local key provider is for development only; use --dev, or keys.provider=vault for PHI")
		}
		if c.Keys.LocalFile == "" {
			bad("keys.local_file", "required with the local provider")
		}
	case "vault":
		v := c.Keys.Vault
		v.Defaults()
		if err := v.Validate(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

// Redacted returns a copy whose secrets are replaced, for printing and logging.
// Every setting tagged sensitive is redacted (spicedb's habit), so that a new secret
// needs only its tag: sensitive:"true" replaces the value, sensitive:"url" the URL's
// password.
func (c *Config) Redacted() *Config {
	r := *c
	r.Classes = append([]Class(nil), c.Classes...)
	for _, s := range r.settings() {
		v := s.field.String()
		switch {
		case v == "":
		case s.sensitive == "url":
			s.field.SetString(RedactURL(v))
		case s.sensitive != "":
			s.field.SetString("REDACTED")
		}
	}
	return &r
}

// RedactURL hides the password of a URL.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "REDACTED"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// String renders the redacted configuration as YAML.
func (c *Config) String() string {
	out, err := yaml.Marshal(c.Redacted())
	if err != nil {
		return "unprintable configuration"
	}
	return string(out)
}

// Class is a token class as configured; internal/tokenizer compiles it.
type Class struct {
	Name      string        `yaml:"name"`
	Format    string        `yaml:"format"`
	Mode      string        `yaml:"mode"`
	Generator string        `yaml:"generator"`
	TTL       time.Duration `yaml:"ttl"`
	// Distinguishable defaults to true where the format supports it.
	Distinguishable *bool `yaml:"distinguishable"`
	PreservePrefix  int   `yaml:"preserve_prefix"`
	PreserveSuffix  int   `yaml:"preserve_suffix"`
	MinLength       int   `yaml:"min_length"`
	MaxLength       int   `yaml:"max_length"`
	// EmailDomain is "keep" (default) or "tokenize", for the email format.
	EmailDomain string `yaml:"email_domain"`
	// MaskKeepLast is how many trailing tokenizable characters a masked reveal shows
	// (default 4: ***-**-6789); the rest become *.
	MaskKeepLast *int `yaml:"mask_keep_last"`
	// Storage is "vault" (default: a row per value in the token vault) or "none" (FF1
	// classes only: no row; a token is decrypted, so any well-formed token reveals a
	// value and no token can be deleted or expire).
	Storage string `yaml:"storage"`
}
