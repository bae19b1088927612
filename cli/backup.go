package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
)

type dbBackupOptions struct {
	IO     *IOStreams
	Config func() (*Config, error)
	Store  func(context.Context) (*sqlstore.Store, error)
	File   string
	Yes    bool
	Output string
}

// pgBackupHelp is what backup and restore say for PostgreSQL, whose own
// tools make consistent online copies and restore them.
func pgBackupHelp(cfg *Config) error {
	url := postgres.Redact(cfg.DatabaseURL)
	return Usagef(`the database is PostgreSQL: use its own tools, which copy it online and consistently:
  back up:  pg_dump --format=custom --file=caracal.dump '%s'
  restore:  pg_restore --clean --if-exists --no-owner --dbname='%s' caracal.dump
then run `+"`caracal merkle verify --full`"+` against the restored database`, url, url)
}

func newDBBackupCmd(f *Factory) *cobra.Command {
	opts := &dbBackupOptions{IO: f.IO, Config: f.Config, Store: f.existingAdminStore}
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the SQLite database while it is in use",
		Long: `Backup writes an online, consistent copy of the embedded SQLite database to
FILE (with VACUUM INTO): processes using the database keep serving while it
runs, and the copy holds every transaction committed before it started.
FILE must not exist. For PostgreSQL, backup prints how to use pg_dump and
exits with status 2.`,
		Example: `  caracal db backup /var/backups/caracal-$(date +%F).db`,
		Args:    exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			return runDBBackup(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

// backupResult is the JSON of db backup and db restore.
type backupResult struct {
	File     string `json:"file"`
	Bytes    int64  `json:"bytes"`
	TreeSize int64  `json:"tree_size"`
	// Previous is where restore moved the database it replaced.
	Previous string `json:"previous,omitempty"`
}

func runDBBackup(ctx context.Context, opts *dbBackupOptions) error {
	cfg, err := opts.Config()
	if err != nil {
		return err
	}
	if cfg.DatabaseURL != "" {
		return pgBackupHelp(cfg)
	}
	dst, err := filepath.Abs(opts.File)
	if err != nil {
		return Usagef("FILE: %v", err)
	}
	if _, err := os.Stat(dst); err == nil {
		return Usagef("FILE: %s already exists: choose a new file name", dst)
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	// VACUUM INTO reads inside one transaction, so the copy is a snapshot
	// even while other processes commit; it runs on the read handle and
	// takes no write lock.
	if _, err := st.ReadDB().ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("back up %s to %s: %w", cfg.DatabasePath(), dst, err)
	}
	if err := os.Chmod(dst, 0o600); err != nil {
		return fmt.Errorf("back up: %w", err)
	}
	r := backupResult{File: dst}
	if fi, err := os.Stat(dst); err == nil {
		r.Bytes = fi.Size()
	}
	if r.TreeSize, err = sqliteTreeSize(ctx, dst); err != nil {
		return fmt.Errorf("read back the copy %s: %w", dst, err)
	}
	return printBackupResult(opts, "Backed up", r)
}

// sqliteTreeSize opens a SQLite file read-only and returns its Merkle tree
// size, which also proves the copy opens.
func sqliteTreeSize(ctx context.Context, path string) (int64, error) {
	s, err := sqlite.Open(ctx, path, sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	return s.TreeSize(ctx)
}

func printBackupResult(opts *dbBackupOptions, verb string, r backupResult) error {
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, r)
	}
	fmt.Fprintf(opts.IO.Out, "%s %s (%d bytes, Merkle tree size %d).\n", verb, r.File, r.Bytes, r.TreeSize)
	if r.Previous != "" {
		fmt.Fprintf(opts.IO.Out, "The replaced database was kept as %s.\n", r.Previous)
	}
	return nil
}

func newDBRestoreCmd(f *Factory) *cobra.Command {
	opts := &dbBackupOptions{IO: f.IO, Config: f.Config}
	cmd := &cobra.Command{
		Use:   "restore FILE --yes",
		Short: "Replace the SQLite database with a backup after verifying its Merkle log",
		Long: `Restore copies FILE next to the database, brings its schema up to date,
and runs the full Merkle verification on the copy (every leaf, every
checkpoint's signature and consistency). Only if that passes does it swap
the copy in; the replaced database is kept beside it as
caracal.db.pre-restore-TIME. If verification fails the current database is
left untouched. Stop every caracal process using the database first.
For PostgreSQL, restore prints how to use pg_restore and exits with status 2.`,
		Example: `  caracal db restore /var/backups/caracal-2026-11-30.db --yes`,
		Args:    exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			return runDBRestore(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Yes, "yes", false, "confirm: the current database is replaced (it is kept as caracal.db.pre-restore-TIME)")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runDBRestore(ctx context.Context, opts *dbBackupOptions) error {
	cfg, err := opts.Config()
	if err != nil {
		return err
	}
	if cfg.DatabaseURL != "" {
		return pgBackupHelp(cfg)
	}
	if !opts.Yes {
		return Usagef("--yes: required: restore replaces the database %s", cfg.DatabasePath())
	}
	src, err := os.Open(opts.File)
	if err != nil {
		return Usagef("FILE: %v", err)
	}
	defer src.Close()
	target := cfg.DatabasePath()
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return fmt.Errorf("create database folder: %w", err)
	}
	// The copy is made and checked beside the database, so the swap is a
	// rename within one file system.
	tmp, err := os.CreateTemp(filepath.Dir(target), ".caracal.db.restore-*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmpPath := tmp.Name()
	swapped := false
	defer func() {
		if !swapped {
			removeSQLiteFiles(tmpPath)
		}
	}()
	n, err := io.Copy(tmp, src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", opts.File, err)
	}
	size, err := verifyRestoreCopy(ctx, tmpPath)
	if err != nil {
		return fmt.Errorf("restore refused, %s left untouched: %s: %w", target, opts.File, err)
	}
	r := backupResult{File: target, Bytes: n, TreeSize: size}
	if _, err := os.Stat(target); err == nil {
		r.Previous = target + ".pre-restore-" + time.Now().UTC().Format("20060102T150405Z")
		if err := moveSQLiteFiles(target, r.Previous); err != nil {
			return fmt.Errorf("restore: keep the current database: %w", err)
		}
	}
	if err := os.Rename(tmpPath, target); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	swapped = true
	return printBackupResult(opts, "Restored", r)
}

// verifyRestoreCopy migrates the copy at path to this binary's schema and
// runs the full Merkle verification on it, then checkpoints its WAL so the
// file alone holds everything.
func verifyRestoreCopy(ctx context.Context, path string) (int64, error) {
	s, err := sqlite.Open(ctx, path, sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		return 0, fmt.Errorf("not a Caracal SQLite database: %w", err)
	}
	defer s.Close()
	cur, latest, err := s.Versions(ctx)
	if err != nil {
		return 0, fmt.Errorf("not a Caracal SQLite database: %w", err)
	}
	if cur > latest {
		return 0, fmt.Errorf("its schema version %d is newer than this binary's %d: restore it with a newer caracal", cur, latest)
	}
	if _, err := s.MigrateUp(ctx); err != nil {
		return 0, fmt.Errorf("migrate the copy: %w", err)
	}
	ring, err := ledger.KeyRing(ctx, s, false)
	if err != nil {
		return 0, err
	}
	rep, err := ledger.VerifyFull(ctx, s, ring, nil)
	if err != nil {
		return 0, fmt.Errorf("the Merkle log does not verify: %w", err)
	}
	if _, err := s.DB().ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return 0, fmt.Errorf("checkpoint the copy: %w", err)
	}
	return rep.Size, nil
}

// sqliteSidecars are the files SQLite keeps beside a database in WAL mode.
var sqliteSidecars = []string{"", "-wal", "-shm"}

// moveSQLiteFiles renames a database and its WAL files together, so the
// moved database still opens with every committed transaction.
func moveSQLiteFiles(from, to string) error {
	for _, s := range sqliteSidecars {
		if err := os.Rename(from+s, to+s); err != nil && !(s != "" && errors.Is(err, os.ErrNotExist)) {
			return err
		}
	}
	return nil
}

func removeSQLiteFiles(path string) {
	for _, s := range sqliteSidecars {
		_ = os.Remove(path + s)
	}
}
