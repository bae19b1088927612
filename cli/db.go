package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger/sqlstore"
)

func newDBCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Create, migrate and inspect the database",
		Long: `Caracal stores everything in one database: by default the embedded SQLite
file $CARACAL_HOME/caracal.db, or PostgreSQL when --database-url (or
CARACAL_DATABASE_URL, or database_url in the config file) is set. A binary
refuses to serve a database whose schema is older than it knows; run
caracal db migrate up after upgrading.`,
	}
	mig := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, roll back or list schema migrations",
	}
	mig.AddCommand(newDBMigrateUpCmd(f), newDBMigrateDownCmd(f), newDBMigrateStatusCmd(f))
	cmd.AddCommand(newDBInitCmd(f), mig, newDBStatusCmd(f), newDBBackupCmd(f), newDBRestoreCmd(f))
	return cmd
}

type dbOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (*sqlstore.Store, error)
	Yes    bool
	Output string
}

func newDBInitCmd(f *Factory) *cobra.Command {
	opts := &dbOptions{IO: f.IO, Store: f.AdminStore}
	cmd := &cobra.Command{
		Use:   "init-db",
		Short: "Create the database schema (the embedded SQLite file is created if absent)",
		Example: `  caracal db init-db
  caracal db init-db --database-url postgres://caracal@db.internal:5432/caracal`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDBMigrateUp(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

// migrateResult is the JSON of db init-db and db migrate up|down.
type migrateResult struct {
	Backend       string  `json:"backend"`
	Applied       []int64 `json:"applied"`
	RolledBack    []int64 `json:"rolled_back"`
	SchemaVersion int64   `json:"schema_version"`
	LatestVersion int64   `json:"latest_version"`
}

func newDBMigrateUpCmd(f *Factory) *cobra.Command {
	opts := &dbOptions{IO: f.IO, Store: f.AdminStore}
	cmd := &cobra.Command{
		Use:     "up",
		Short:   "Apply every pending migration",
		Example: `  caracal db migrate up`,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runDBMigrateUp(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runDBMigrateUp(ctx context.Context, opts *dbOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	applied, err := st.MigrateUp(ctx)
	if err != nil {
		return err
	}
	return printMigrateResult(ctx, opts, st, migrateResult{Applied: nonNil(applied), RolledBack: []int64{}})
}

func printMigrateResult(ctx context.Context, opts *dbOptions, st *sqlstore.Store, r migrateResult) error {
	cur, latest, err := st.Versions(ctx)
	if err != nil {
		return err
	}
	r.Backend, r.SchemaVersion, r.LatestVersion = st.Dialect().Name(), cur, latest
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, r)
	}
	w := opts.IO.Out
	switch {
	case len(r.Applied) > 0:
		fmt.Fprintf(w, "Applied migrations %s.\n", joinInts(r.Applied))
	case len(r.RolledBack) > 0:
		fmt.Fprintf(w, "Rolled back migration %s.\n", joinInts(r.RolledBack))
	default:
		fmt.Fprintln(w, "No migrations to apply.")
	}
	fmt.Fprintf(w, "Schema version %d of %d (%s).\n", cur, latest, r.Backend)
	return nil
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func newDBMigrateDownCmd(f *Factory) *cobra.Command {
	opts := &dbOptions{IO: f.IO, Store: f.existingAdminStore}
	cmd := &cobra.Command{
		Use:   "down --yes",
		Short: "Roll back the most recent migration (destroys the data it holds)",
		Example: `  caracal db migrate down --yes
  caracal db migrate up`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDBMigrateDown(cmd.Context(), opts) },
	}
	cmd.Flags().BoolVar(&opts.Yes, "yes", false, "confirm: rolling back drops the tables the migration created, with their rows")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runDBMigrateDown(ctx context.Context, opts *dbOptions) error {
	if !opts.Yes {
		return Usagef("--yes: required: rolling back a migration drops the tables it created, with their rows")
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	v, err := st.MigrateDown(ctx)
	if err != nil {
		return err
	}
	return printMigrateResult(ctx, opts, st, migrateResult{Applied: []int64{}, RolledBack: []int64{v}})
}

func newDBMigrateStatusCmd(f *Factory) *cobra.Command {
	opts := &dbOptions{IO: f.IO, Store: f.existingAdminStore}
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "List every migration this binary knows and whether it is applied",
		Example: `  caracal db migrate status -o json`,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runDBMigrateStatus(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runDBMigrateStatus(ctx context.Context, opts *dbOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	ms, err := st.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	ms = nonNil(ms)
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		state := "pending"
		if m.Applied {
			state = "applied"
		}
		rows = append(rows, []string{fmt.Sprint(m.Version), m.Name, state})
	}
	return printRows(opts.IO.Out, opts.Output, ms, []string{"version", "name", "state"}, rows)
}

func newDBStatusCmd(f *Factory) *cobra.Command {
	opts := &dbOptions{IO: f.IO, Store: f.existingAdminStore}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the backend, schema version and row counts",
		Example: `  caracal db status
  caracal db status --database-url postgres://caracal@localhost/caracal -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDBStatus(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runDBStatus(ctx context.Context, opts *dbOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	s, err := st.Status(ctx)
	if err != nil {
		return fmt.Errorf("database status: %w", err)
	}
	if s.Rows == nil {
		s.Rows = map[string]int64{}
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, s)
	}
	w := opts.IO.Out
	state := "current"
	if s.SchemaVersion < s.LatestVersion {
		state = "outdated: run `caracal db migrate up`"
	}
	if err := printKV(w,
		[2]string{"Backend", s.Backend},
		[2]string{"Location", orDash(s.Location)},
		[2]string{"Schema", fmt.Sprintf("version %d of %d (%s)", s.SchemaVersion, s.LatestVersion, state)},
	); err != nil {
		return err
	}
	if len(s.Rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	names := make([]string, 0, len(s.Rows))
	for k := range s.Rows {
		names = append(names, k)
	}
	sort.Strings(names)
	t := newTable(w, "table", "rows")
	for _, n := range names {
		t.row(n, fmt.Sprint(s.Rows[n]))
	}
	return t.flush()
}
