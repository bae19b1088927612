package cli

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// ledgerStore is what the ledger commands need.
type ledgerStore interface {
	ledger.Agents
	ledger.Events
}

func ledgerStoreFunc(f *Factory) func(context.Context) (ledgerStore, error) {
	return func(ctx context.Context) (ledgerStore, error) { return f.Store(ctx) }
}

func newLedgerCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Query, summarise and export the ledger of every decision",
		Long: `The ledger records every priced call: charges, denials (amount zero),
unconfirmed charges and refunds, in order. Events are never changed; each
is a leaf of the Merkle tree that caracal merkle verifies.`,
	}
	cmd.AddCommand(newLedgerQueryCmd(f), newLedgerTailCmd(f), newLedgerSummaryCmd(f), newLedgerExportCmd(f))
	return cmd
}

// eventFilterFlags are the filters shared by query, summary and export.
type eventFilterFlags struct {
	Agent           string
	IncludeChildren bool
	Since           string
	Until           string
	Resource        string
	Outcome         string
	Limit           int
}

func addEventFilterFlags(cmd *cobra.Command, e *eventFilterFlags, withLimit bool) {
	fl := cmd.Flags()
	fl.StringVar(&e.Agent, "agent", "", "only this agent's events (name or ID)")
	fl.BoolVar(&e.IncludeChildren, "include-children", false, "with --agent: also every descendant's events")
	fl.StringVar(&e.Since, "since", "", "from this time on: RFC 3339, a date (2026-01-02, UTC), a duration ago (24h, 7d, 1w), today or yesterday (local midnight)")
	fl.StringVar(&e.Until, "until", "", "before this time (same forms as --since)")
	fl.StringVar(&e.Resource, "resource", "", "resource glob such as 'mcp:fs/*'")
	fl.StringVar(&e.Outcome, "outcome", "", "charged, denied, unconfirmed or refunded")
	if withLimit {
		fl.IntVar(&e.Limit, "limit", 100, "at most this many events, the newest (the oldest with --oldest-first); 0: no limit")
	}
}

// filter validates the flags and resolves agent names to IDs.
func (e *eventFilterFlags) filter(ctx context.Context, now time.Time, st ledger.Agents) (ledger.EventFilter, error) {
	var f ledger.EventFilter
	var err error
	if f.Since, err = parseTimeFlag("--since", e.Since, now); err != nil {
		return f, err
	}
	if f.Until, err = parseTimeFlag("--until", e.Until, now); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, Usagef("--until: %s is not after --since %s", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	if f.Outcome, err = policy.ParseOutcome(e.Outcome); err != nil {
		return f, Usagef("--outcome: %v", err)
	}
	if e.Limit < 0 {
		return f, Usagef("--limit: invalid limit %d: want 0 or more", e.Limit)
	}
	f.Limit = e.Limit
	if e.Resource != "" && strings.ContainsAny(e.Resource, " \t\n") {
		return f, Usagef("--resource: invalid pattern %q: no spaces", e.Resource)
	}
	f.Resource = e.Resource
	if e.IncludeChildren && e.Agent == "" {
		return f, Usagef("--include-children: requires --agent")
	}
	if e.Agent == "" {
		return f, nil
	}
	a, err := resolveAgent(ctx, st, "--agent", e.Agent)
	if err != nil {
		return f, err
	}
	f.AgentIDs = []string{a.ID}
	if e.IncludeChildren {
		all, err := st.ListAgents(ctx)
		if err != nil {
			return f, fmt.Errorf("list agents: %w", err)
		}
		f.AgentIDs = policy.Descendants(all, a.ID)
	}
	return f, nil
}

// parseTimeFlag reads RFC 3339, a date (midnight UTC), a duration ago or
// today / yesterday: midnight in now's time zone, which for a command is the
// local zone of the machine running it (TZ).
func parseTimeFlag(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	switch strings.ToLower(s) {
	case "today", "yesterday":
		y, m, d := now.Date()
		if strings.EqualFold(s, "yesterday") {
			d--
		}
		return time.Date(y, m, d, 0, 0, 0, 0, now.Location()), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := policy.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, Usagef("%s: invalid time %q: want RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), a duration ago (24h, 7d, 1w), today or yesterday", flag, s)
}

type ledgerQueryOptions struct {
	IO          *IOStreams
	Store       func(context.Context) (ledgerStore, error)
	Now         func() time.Time
	Filter      eventFilterFlags
	OldestFirst bool
	Output      string
}

func newLedgerQueryCmd(f *Factory) *cobra.Command {
	opts := &ledgerQueryOptions{IO: f.IO, Store: ledgerStoreFunc(f), Now: f.now}
	cmd := &cobra.Command{
		Use:   "query",
		Short: "List ledger events, the newest first",
		Long: `Query lists the events that match the filters, the newest first (the
oldest first with --oldest-first). When --limit cuts the list, a line on
standard error says how many matched: "showing 100 of 12,083; --limit 0 for
all".`,
		Example: `  caracal ledger query --agent research-bot --since 24h
  caracal ledger query --since today --oldest-first
  caracal ledger query --resource 'llm:openai/*' --outcome denied -o json
  caracal ledger query --since 2026-11-01 --until 2026-12-01 --limit 0 -o csv > november.csv`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLedgerQuery(cmd.Context(), opts) },
	}
	addEventFilterFlags(cmd, &opts.Filter, true)
	cmd.Flags().BoolVar(&opts.OldestFirst, "oldest-first", false, "list the oldest events first (ledger order)")
	addOutputFlag(cmd, &opts.Output, true)
	return cmd
}

func runLedgerQuery(ctx context.Context, opts *ledgerQueryOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	flt, err := opts.Filter.filter(ctx, opts.Now(), st)
	if err != nil {
		return err
	}
	flt.NewestFirst = !opts.OldestFirst
	w := bufio.NewWriter(opts.IO.Out)
	defer w.Flush()
	shown := 0
	var emit func(ledger.Event) error
	var done func() error
	switch opts.Output {
	case FormatJSON:
		// Streamed as one JSON array, element by element.
		n := 0
		emit = func(ev ledger.Event) error {
			b, err := json.MarshalIndent(ev, "  ", "  ")
			if err != nil {
				return err
			}
			sep := ",\n  "
			if n == 0 {
				sep = "[\n  "
			}
			n++
			_, err = fmt.Fprintf(w, "%s%s", sep, b)
			return err
		}
		done = func() error {
			if n == 0 {
				_, err := io.WriteString(w, "[]\n")
				return err
			}
			_, err := io.WriteString(w, "\n]\n")
			return err
		}
	case FormatCSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(ledger.EventCSVHeader); err != nil {
			return err
		}
		emit = func(ev ledger.Event) error { return cw.Write(ledger.EventCSVRow(ev)) }
		done = func() error { cw.Flush(); return cw.Error() }
	default:
		t := newTable(w, "seq", "time", "agent", "resource", "outcome", "amount", "currency", "code")
		emit = func(ev ledger.Event) error {
			seq := "-"
			if ev.Seq >= 0 {
				seq = strconv.FormatInt(ev.Seq, 10)
			}
			t.row(seq, formatTime(ev.Time), ev.AgentName, ev.Resource, string(ev.Outcome), ev.Amount.String(), ev.Currency, orDash(string(ev.Code)))
			return nil
		}
		done = t.flush
	}
	counted := func(ev ledger.Event) error { shown++; return emit(ev) }
	if err := st.QueryEvents(ctx, flt, counted); err != nil {
		return fmt.Errorf("query ledger: %w", err)
	}
	if err := done(); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if flt.Limit > 0 && shown == flt.Limit {
		total, err := st.CountEvents(ctx, flt)
		if err != nil {
			return fmt.Errorf("count ledger events: %w", err)
		}
		if total > int64(shown) {
			fmt.Fprintf(opts.IO.ErrOut, "showing %s of %s; --limit 0 for all\n", formatCount(int64(shown)), formatCount(total))
		}
	}
	return nil
}

// formatCount prints a count with thousands separators: 12,083.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

type ledgerSummaryOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledgerStore, error)
	Now    func() time.Time
	Filter eventFilterFlags
	By     string
	Output string
}

func newLedgerSummaryCmd(f *Factory) *cobra.Command {
	opts := &ledgerSummaryOptions{IO: f.IO, Store: ledgerStoreFunc(f), Now: f.now}
	cmd := &cobra.Command{
		Use:   "summary",
		Short: "Total the ledger by resource, agent or day",
		Example: `  caracal ledger summary --by resource
  caracal ledger summary --by agent --agent research-bot --include-children
  caracal ledger summary --by day --since 30d -o csv`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLedgerSummary(cmd.Context(), opts) },
	}
	addEventFilterFlags(cmd, &opts.Filter, false)
	cmd.Flags().StringVar(&opts.By, "by", string(ledger.ByResource), "group by resource, agent or day")
	addOutputFlag(cmd, &opts.Output, true)
	return cmd
}

func runLedgerSummary(ctx context.Context, opts *ledgerSummaryOptions) error {
	by := ledger.SummaryBy(opts.By)
	switch by {
	case ledger.ByResource, ledger.ByAgent, ledger.ByDay:
	default:
		return Usagef("--by: invalid grouping %q: want resource, agent or day", opts.By)
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	flt, err := opts.Filter.filter(ctx, opts.Now(), st)
	if err != nil {
		return err
	}
	rows, err := st.Summary(ctx, flt, by)
	if err != nil {
		return fmt.Errorf("summarise ledger: %w", err)
	}
	rows = nonNil(rows)
	cells := make([][]string, 0, len(rows))
	for _, r := range rows {
		cells = append(cells, []string{r.Key, strconv.FormatInt(r.Events, 10), r.Charged.String(), strconv.FormatInt(r.Denied, 10),
			strconv.FormatInt(r.Unpriced, 10), r.Currency})
	}
	return printRows(opts.IO.Out, opts.Output, rows, []string{string(by), "events", "charged", "denied", "unpriced", "currency"}, cells)
}

type ledgerExportOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledgerStore, error)
	Now    func() time.Time
	Filter eventFilterFlags
	Format string
}

func newLedgerExportCmd(f *Factory) *cobra.Command {
	opts := &ledgerExportOptions{IO: f.IO, Store: ledgerStoreFunc(f), Now: f.now}
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Stream every matching event as JSON Lines or CSV",
		Long: `Export writes events in ledger order as they are read, so its memory does
not grow with the ledger. JSON Lines carries one event object per line with
the same field names as ledger query -o json.`,
		Example: `  caracal ledger export > ledger.jsonl
  caracal ledger export --format csv --since 2026-11-01 > november.csv`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLedgerExport(cmd.Context(), opts) },
	}
	addEventFilterFlags(cmd, &opts.Filter, false)
	cmd.Flags().StringVar(&opts.Format, "format", "jsonl", "jsonl or csv")
	return cmd
}

func runLedgerExport(ctx context.Context, opts *ledgerExportOptions) error {
	if opts.Format != "jsonl" && opts.Format != "csv" {
		return Usagef("--format: unknown format %q: want jsonl or csv", opts.Format)
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	flt, err := opts.Filter.filter(ctx, opts.Now(), st)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(opts.IO.Out, 64<<10)
	var emit func(ledger.Event) error
	var cw *csv.Writer
	if opts.Format == "csv" {
		cw = csv.NewWriter(w)
		if err := cw.Write(ledger.EventCSVHeader); err != nil {
			return err
		}
		emit = func(ev ledger.Event) error { return cw.Write(ledger.EventCSVRow(ev)) }
	} else {
		emit = func(ev ledger.Event) error { return printJSONLine(w, ev) }
	}
	if err := st.QueryEvents(ctx, flt, emit); err != nil {
		return fmt.Errorf("export ledger: %w", err)
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	}
	return w.Flush()
}
