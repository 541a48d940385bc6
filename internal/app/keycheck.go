package app

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
)

// ErrKeyMismatch means the database's data keys were wrapped under another
// key-encryption key (or by another key provider) than the configured one. Nothing in
// the database can be read with this configuration, and retrying does not help: serve
// stops, and every command that uses keys refuses.
var ErrKeyMismatch = errors.New("the database's data keys do not match the configured key")

// keyMismatch is ErrKeyMismatch with a message that names the database, the key
// provider, the cause and the ways out.
type keyMismatch struct {
	msg   string
	cause error
}

func (e *keyMismatch) Error() string        { return e.msg }
func (e *keyMismatch) Unwrap() error        { return e.cause }
func (e *keyMismatch) Is(target error) bool { return target == ErrKeyMismatch }

// DescribeDatabase names the configured database for people: its URL, password
// redacted.
func DescribeDatabase(cfg *config.Config) string { return config.RedactURL(cfg.Database.URL) }

// DescribeKeys names the configured key provider for people.
func DescribeKeys(cfg *config.Config) string {
	switch cfg.Keys.Provider {
	case "local":
		return "local key file " + cfg.Keys.LocalFile
	case "vault":
		v := cfg.Keys.Vault
		v.Defaults()
		return fmt.Sprintf("vault %s transit key %s/%s", v.Address, v.TransitMount, v.KEKName)
	}
	return cfg.Keys.Provider
}

// keyError turns an error of loading the data keys into ErrKeyMismatch when the keys
// cannot be from the configured key (they do not authenticate, or another provider
// wrapped them); other errors (a database or Vault that does not answer) pass
// unchanged, to be retried.
func keyError(cfg *config.Config, err error) error {
	var why, fix string
	switch {
	case errors.Is(err, keys.ErrOtherProvider):
		why = "they were wrapped by another key provider"
		fix = "configure the provider (keys.provider) they were created with"
	case errors.Is(err, keys.ErrCorrupt) && cfg.Keys.Provider == "local":
		why = "they were wrapped by a different key file"
		fix = "use the key file they were created with (keys.local_file)"
	case errors.Is(err, keys.ErrCorrupt):
		why = "they were wrapped under a different Vault Transit key"
		fix = "use the Transit key they were created with (keys.vault.address, keys.vault.kek_name)"
	default:
		return err
	}
	reset := ""
	if cfg.Dev && cfg.Keys.Provider == "local" {
		reset = "; in development, `tokenizer dev reset` drops and recreates this database and the key file, deleting every token in it"
	}
	msg := fmt.Sprintf("database %s holds data keys that the configured key provider (%s) cannot unwrap: %s (%v). "+
		"Either %s, or use a different database (database.url)%s",
		DescribeDatabase(cfg), DescribeKeys(cfg), why, err, fix, reset)
	return &keyMismatch{msg: msg, cause: err}
}

// CheckKeys unwraps every stored data key without creating any: ErrKeyMismatch when
// they are not from the configured key. For commands that read with keys but must not
// change the database (audit verify).
func (a *App) CheckKeys(ctx context.Context) error {
	if err := a.CheckSchema(ctx); err != nil {
		return err
	}
	if err := keys.NewKeyring(a.Provider, a.Store).Reload(ctx); err != nil {
		return keyError(a.Config, err)
	}
	return nil
}

// DevDatabasePrefix begins the name of every development database that is named after
// its key file.
const DevDatabasePrefix = "tokenizer_dev_"

// ResolveDevDatabase names the development database after the local key file, so that
// a database is only ever used with the key that wrapped its data keys: in development
// mode, with the local key provider and database.url left at its default, the
// database becomes tokenizer_dev_<key id> (the key file is created when missing).
// Two checkouts on one machine, each with its own .tokenizer/dev-kek.hex, then never
// share a database, and a new key file starts a new database. It reports whether it
// changed the URL.
func ResolveDevDatabase(cfg *config.Config) (bool, error) {
	if !cfg.Dev || cfg.Keys.Provider != "local" || cfg.Database.URL != config.Defaults().Database.URL {
		return false, nil
	}
	p, _, err := keys.OpenLocal(cfg.Keys.LocalFile)
	if err != nil {
		return false, err
	}
	u, err := url.Parse(cfg.Database.URL)
	if err != nil {
		return false, err
	}
	u.Path = "/" + DevDatabasePrefix + p.ID()
	cfg.Database.URL = u.String()
	return true, nil
}

// DatabaseName is the database named by a PostgreSQL URL.
func DatabaseName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}
