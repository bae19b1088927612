package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
)

// DatabaseFile is the embedded SQLite database's file name inside the home.
const DatabaseFile = "caracal.db"

// ConfigFile is the configuration file's name inside the home.
const ConfigFile = "config.yaml"

// connectTimeout bounds how long opening a PostgreSQL store may take, so an
// unreachable server fails a command instead of hanging it.
const connectTimeout = 10 * time.Second

// GlobalFlags are the values of the root command's persistent flags. Empty
// means the flag was not given.
type GlobalFlags struct {
	Home        string // --home
	DatabaseURL string // --database-url
	ConfigFile  string // --config
}

// Factory holds what commands share: streams, configuration and the store.
// It is created once per process (or per test) and passed to every command
// constructor, so no command reaches for globals. Configuration and the
// store are loaded lazily, on first use, and cached.
type Factory struct {
	IO *IOStreams
	// Flags holds the global flags; tests set them directly.
	Flags GlobalFlags
	// Now is the clock; tests replace it.
	Now func() time.Time

	mu     sync.Mutex
	cfg    *Config
	store  *sqlstore.Store
	admin  *sqlstore.Store // opened without the schema check, for db and init
	closed bool
}

// NewFactory returns a Factory over io.
func NewFactory(io *IOStreams) *Factory {
	return &Factory{IO: io, Now: time.Now}
}

func (f *Factory) now() time.Time {
	if f.Now == nil {
		return time.Now()
	}
	return f.Now()
}

// Close releases what the factory opened.
func (f *Factory) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.store != nil {
		_ = f.store.Close()
		f.store = nil
	}
	if f.admin != nil {
		_ = f.admin.Close()
		f.admin = nil
	}
	f.closed = true
}

func (f *Factory) bindGlobalFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.StringVar(&f.Flags.Home, "home", "", "Caracal's home folder (default $CARACAL_HOME or ~/.caracal)")
	pf.StringVar(&f.Flags.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://…); default $CARACAL_DATABASE_URL, then the embedded SQLite file in the home")
	pf.StringVar(&f.Flags.ConfigFile, "config", "", "configuration file (default $CARACAL_HOME/config.yaml)")
}

// Home returns Caracal's home folder: --home, else $CARACAL_HOME, else
// ~/.caracal. It does not create it.
func (f *Factory) Home() (string, error) {
	if f.Flags.Home != "" {
		return filepath.Abs(f.Flags.Home)
	}
	if h := os.Getenv("CARACAL_HOME"); h != "" {
		return filepath.Abs(h)
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", Usagef("--home: cannot find the user's home folder (%v); set --home or CARACAL_HOME", err)
	}
	return filepath.Join(u, ".caracal"), nil
}

// Config loads the configuration once: flags, then CARACAL_* environment
// variables, then the configuration file. An invalid configuration is a
// UsageError that names the key.
func (f *Factory) Config() (*Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg != nil {
		return f.cfg, nil
	}
	home, err := f.Home()
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(home, f.Flags)
	if err != nil {
		return nil, err
	}
	f.cfg = cfg
	return cfg, nil
}

// SQLStore opens the configured store once and checks that its schema is
// current. It is closed by Close.
func (f *Factory) SQLStore(ctx context.Context) (*sqlstore.Store, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.store != nil {
		return f.store, nil
	}
	s, err := openStore(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	f.store = s
	return s, nil
}

// AdminStore opens the configured store without checking the schema
// version, for migrations and status. The SQLite file is created if absent.
func (f *Factory) AdminStore(ctx context.Context) (*sqlstore.Store, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.admin != nil {
		return f.admin, nil
	}
	s, err := openStore(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	f.admin = s
	return s, nil
}

// existingAdminStore is AdminStore for commands that only inspect or roll
// back: they must not leave an empty SQLite file behind in a fresh home.
func (f *Factory) existingAdminStore(ctx context.Context) (*sqlstore.Store, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	if cfg.DatabaseURL == "" {
		if _, err := os.Stat(cfg.DatabasePath()); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s: run `caracal init` first", cfg.DatabasePath())
		}
	}
	return f.AdminStore(ctx)
}

// Store opens the configured store as a ledger.Store.
func (f *Factory) Store(ctx context.Context) (ledger.Store, error) {
	s, err := f.SQLStore(ctx)
	if err != nil {
		return nil, err // not s: a nil *sqlstore.Store would be a non-nil Store
	}
	return s, nil
}

// openStore opens PostgreSQL when a database URL is configured, else the
// SQLite file in the home. Without skipSchema a missing SQLite file is
// reported as "run caracal init" rather than silently created empty.
func openStore(ctx context.Context, cfg *Config, skipSchema bool) (*sqlstore.Store, error) {
	if cfg.DatabaseURL != "" {
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		s, err := postgres.Open(cctx, cfg.DatabaseURL, postgres.Options{SkipSchemaCheck: skipSchema, LeaseTTL: cfg.Enforcement.LeaseTTL})
		if err != nil {
			return nil, storeOpenError(cfg, err)
		}
		return s, nil
	}
	path := cfg.DatabasePath()
	if !skipSchema {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s: run `caracal init` first", path)
		}
	}
	s, err := sqlite.Open(ctx, path, sqlite.Options{SkipSchemaCheck: skipSchema, LeaseTTL: cfg.Enforcement.LeaseTTL})
	if err != nil {
		return nil, storeOpenError(cfg, err)
	}
	return s, nil
}

func storeOpenError(cfg *Config, err error) error {
	if errors.Is(err, ledger.ErrSchemaOutdated) || cfg.DatabaseURL == "" {
		return err
	}
	var ne *net.OpError
	unreachable := errors.As(err, &ne) || errors.Is(err, ledger.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
	if !unreachable {
		return err
	}
	// pgx reports every connection attempt on a line of its own; the
	// network error, else the last attempt's reason, says what went wrong.
	var cause error
	switch {
	case ne != nil:
		cause = ne
	case errors.Is(err, context.DeadlineExceeded):
		cause = fmt.Errorf("no answer within %s", connectTimeout)
	default:
		lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
		cause = errors.New(strings.TrimSpace(lines[len(lines)-1]))
	}
	// One line; errors.Is still finds ledger.ErrUnavailable and the driver's error.
	return errkind.New(ledger.ErrUnavailable, fmt.Sprintf("database unreachable at %s: %v", postgres.Redact(cfg.DatabaseURL), cause), err)
}
