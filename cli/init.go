package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
)

// initResult is `caracal init`'s JSON.
type initResult struct {
	Home          string  `json:"home"`
	ConfigFile    string  `json:"config_file"`
	ConfigCreated bool    `json:"config_created"`
	Backend       string  `json:"backend"`
	Database      string  `json:"database"`
	Applied       []int64 `json:"applied_migrations"`
	SchemaVersion int64   `json:"schema_version"`
	SigningKey    string  `json:"signing_key,omitempty"` // key ID
	KeyCreated    bool    `json:"signing_key_created"`
	PublicKey     string  `json:"public_key,omitempty"`
}

type initOptions struct {
	IO      *IOStreams
	Factory *Factory
	Output  string
}

// flagOnlyDatabase reports whether the database URL came from --database-url
// alone, so later commands without the flag would use another database.
func (o *initOptions) flagOnlyDatabase() bool {
	f := o.Factory
	if f.Flags.DatabaseURL == "" || os.Getenv("CARACAL_DATABASE_URL") != "" {
		return false
	}
	home, err := f.Home()
	if err != nil {
		return false
	}
	saved, err := LoadConfig(home, GlobalFlags{ConfigFile: f.Flags.ConfigFile})
	return err == nil && saved.DatabaseURL != f.Flags.DatabaseURL
}

func newInitCmd(f *Factory) *cobra.Command {
	opts := &initOptions{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Initialise Caracal's home: config file, database schema and signing key",
		Long: `Init creates the home folder (mode 0700; $CARACAL_HOME or ~/.caracal unless
--home is given), writes a commented config.yaml if there is none, creates
or migrates the database schema and generates the first checkpoint signing
key. It is safe to run again: nothing that exists is overwritten.`,
		Example: `  caracal init
  caracal init --home /srv/caracal
  caracal init --database-url postgres://caracal@localhost:5432/caracal`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := runInit(cmd.Context(), opts.Factory)
			if err != nil {
				return err
			}
			return printInitResult(opts, r)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

// runInit initialises the home and the database; it is idempotent.
func runInit(ctx context.Context, f *Factory) (initResult, error) {
	home, err := f.Home()
	if err != nil {
		return initResult{}, err
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return initResult{}, fmt.Errorf("create home %s: %w", home, err)
	}
	warnOpenHome(f.IO.ErrOut, home)
	r := initResult{Home: home, ConfigFile: filepath.Join(home, ConfigFile)}
	if f.Flags.ConfigFile != "" {
		r.ConfigFile = f.Flags.ConfigFile
	} else if p := os.Getenv("CARACAL_CONFIG"); p != "" {
		r.ConfigFile = p
	} else {
		// O_EXCL: an existing configuration is the operator's and is kept.
		fh, err := os.OpenFile(r.ConfigFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		switch {
		case err == nil:
			_, werr := fh.WriteString(defaultConfigFile)
			if cerr := fh.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(r.ConfigFile)
				return initResult{}, fmt.Errorf("write %s: %w", r.ConfigFile, werr)
			}
			r.ConfigCreated = true
		case errors.Is(err, fs.ErrExist):
		default:
			return initResult{}, fmt.Errorf("write %s: %w", r.ConfigFile, err)
		}
	}
	cfg, err := f.Config()
	if err != nil {
		return initResult{}, err
	}
	st, err := f.AdminStore(ctx)
	if err != nil {
		return initResult{}, err
	}
	r.Backend = cfg.Backend()
	r.Database = cfg.DatabasePath()
	if cfg.DatabaseURL != "" {
		r.Database = postgres.Redact(cfg.DatabaseURL)
	}
	applied, err := st.MigrateUp(ctx)
	if err != nil {
		return initResult{}, err
	}
	r.Applied = nonNil(applied)
	if r.SchemaVersion, _, err = st.Versions(ctx); err != nil {
		return initResult{}, err
	}
	kf, created, err := ledger.EnsureSigningKey(ctx, st, home, "")
	if err != nil {
		return initResult{}, fmt.Errorf("signing key: %w", err)
	}
	r.KeyCreated = created
	if kf.Signer != nil {
		r.SigningKey = kf.Signer.KeyID()
		r.PublicKey = kf.Signer.VerifierKey()
	}
	return r, nil
}

// warnOpenHome warns when other users can read or enter the home, which
// holds the database (with every API key's hash), the config and the
// checkpoint signing keys. An existing home is the operator's to change,
// so init only says so.
func warnOpenHome(w io.Writer, home string) {
	st, err := os.Stat(home)
	if err != nil || runtime.GOOS == "windows" {
		return
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		fmt.Fprintf(w, "warning: home %s has mode %04o: other users can read it, and it holds the database and the signing keys; run chmod 700 %s\n", home, perm, home)
	}
}

func printInitResult(opts *initOptions, r initResult) error {
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, r)
	}
	cfgNote := "kept"
	if r.ConfigCreated {
		cfgNote = "created"
	}
	schema := fmt.Sprintf("version %d", r.SchemaVersion)
	if len(r.Applied) > 0 {
		schema += " (applied " + joinInts(r.Applied) + ")"
	}
	key := "-"
	if r.SigningKey != "" {
		key = r.SigningKey
		if r.KeyCreated {
			key += " (created)"
		}
	}
	if err := printKV(opts.IO.Out,
		[2]string{"Home", r.Home},
		[2]string{"Config", r.ConfigFile + " (" + cfgNote + ")"},
		[2]string{"Database", r.Backend + " " + r.Database},
		[2]string{"Schema", schema},
		[2]string{"Signing key", key},
	); err != nil {
		return err
	}
	if opts.flagOnlyDatabase() {
		fmt.Fprintln(opts.IO.Out, "\nLater commands use this database only with --database-url, CARACAL_DATABASE_URL or database_url in "+r.ConfigFile+".")
	}
	fmt.Fprintln(opts.IO.Out, "\nNext: caracal agent register --name my-agent --owner you@example.com")
	return nil
}
