package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
)

// tailPollInterval is how often `ledger tail -f` asks the store for new
// events. Another process's events reach the tree within the integrator's
// interval (200 ms), so a new event shows within about half a second.
const tailPollInterval = 250 * time.Millisecond

// tailStore is what `ledger tail` needs.
type tailStore interface {
	ledgerStore
	TreeSize(ctx context.Context) (int64, error)
}

type ledgerTailOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (tailStore, error)
	Now    func() time.Time
	Filter eventFilterFlags
	Lines  int
	Follow bool
	Output string
	// Poll is the follow interval; zero means tailPollInterval.
	Poll time.Duration
}

func newLedgerTailCmd(f *Factory) *cobra.Command {
	opts := &ledgerTailOptions{IO: f.IO, Now: f.now, Store: func(ctx context.Context) (tailStore, error) {
		return f.Store(ctx)
	}}
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Show the last events, and with -f every new one as it is written",
		Long: `Tail prints the last -n events that match the filters, oldest first. With
-f it then waits and prints every new matching event as it enters the ledger,
whichever process wrote it (every process sharing the database), until
interrupted. New events are read by sequence number: they show once a
signing process (a caracal mcp, proxy or serve whose home holds the active
checkpoint signing key) or caracal merkle integrate has added them to the
Merkle tree, normally within a fraction of a second while one runs.`,
		Example: `  caracal ledger tail
  caracal ledger tail -f --agent research-bot
  caracal ledger tail -f --outcome denied -o json | jq .reason`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLedgerTail(cmd.Context(), opts) },
	}
	addEventFilterFlags(cmd, &opts.Filter, false)
	cmd.Flags().IntVarP(&opts.Lines, "lines", "n", 10, "how many of the last events to print first")
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new events until interrupted")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runLedgerTail(ctx context.Context, opts *ledgerTailOptions) error {
	if opts.Lines < 0 {
		return Usagef("-n: invalid count %d: want 0 or more", opts.Lines)
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	flt, err := opts.Filter.filter(ctx, opts.Now(), st)
	if err != nil {
		return err
	}
	// Read the tree size before the last events: an event integrated in
	// between is then both among the last and at or past the cursor, and
	// printed once thanks to the shown set below.
	next, err := st.TreeSize(ctx)
	if err != nil {
		return fmt.Errorf("read the tree size: %w", err)
	}
	w := bufio.NewWriter(opts.IO.Out)
	p := &tailPrinter{w: w, json: opts.Output == FormatJSON}
	var last []ledger.Event
	if opts.Lines > 0 {
		lf := flt
		lf.NewestFirst, lf.Limit = true, opts.Lines
		if err := st.QueryEvents(ctx, lf, func(ev ledger.Event) error { last = append(last, ev); return nil }); err != nil {
			return fmt.Errorf("read the last events: %w", err)
		}
	}
	shown := make(map[string]bool, len(last))
	for _, ev := range slices.Backward(last) {
		shown[ev.ID] = true
		if err := p.print(ev); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil || !opts.Follow {
		return err
	}
	poll := opts.Poll
	if poll <= 0 {
		poll = tailPollInterval
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	ff := flt
	ff.Integrated = true
	down := false // the store was unreachable at the last poll
	for {
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of a follow
		case <-tick.C:
		}
		ff.FromSeq = next
		err := st.QueryEvents(ctx, ff, func(ev ledger.Event) error {
			next = ev.Seq + 1
			if shown[ev.ID] {
				delete(shown, ev.ID)
				return nil
			}
			return p.print(ev)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ledger.ErrUnavailable) {
				// Keep following through a database restart; say so once.
				if !down {
					fmt.Fprintf(opts.IO.ErrOut, "caracal: %v; retrying\n", err)
				}
				down = true
				continue
			}
			return fmt.Errorf("read new events: %w", err)
		}
		if down {
			fmt.Fprintln(opts.IO.ErrOut, "caracal: database reachable again")
			down = false
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// tailPrinter prints events one a line: JSON Lines, or fixed-width columns
// under a header printed before the first event, so that lines printed
// seconds apart still line up.
type tailPrinter struct {
	w      io.Writer
	json   bool
	header bool
}

const tailLine = "%-7s %-20s %-16s %-28s %-11s %12s %-8s %s\n"

func (p *tailPrinter) print(ev ledger.Event) error {
	if p.json {
		return printJSONLine(p.w, ev)
	}
	if !p.header {
		p.header = true
		if _, err := fmt.Fprintf(p.w, tailLine, "SEQ", "TIME", "AGENT", "RESOURCE", "OUTCOME", "AMOUNT", "CURRENCY", "CODE"); err != nil {
			return err
		}
	}
	seq := "-"
	if ev.Seq >= 0 {
		seq = strconv.FormatInt(ev.Seq, 10)
	}
	_, err := fmt.Fprintf(p.w, tailLine, seq, formatTime(ev.Time), cellReplacer.Replace(ev.AgentName),
		cellReplacer.Replace(ev.Resource), ev.Outcome, ev.Amount.String(), ev.Currency, orDash(string(ev.Code)))
	return err
}
