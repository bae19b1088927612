package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// budgetStore is what the budget commands need: agents, and usage read
// through the same code that enforcement reserves against.
type budgetStore interface {
	ledger.Agents
	Usage(ctx context.Context, agentID string, now time.Time) ([]policy.PolicyUsage, error)
}

func newBudgetCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "budget",
		Short: "Show what each budget has spent, holds reserved and has left",
		Long: `A budget is an active policy. Its usage is read exactly as enforcement
reads it when it decides a call: spent is what settled calls charged in the
current window, reserved is what calls still in flight hold.`,
	}
	cmd.AddCommand(newBudgetStatusCmd(f))
	return cmd
}

type budgetStatusOptions struct {
	IO              *IOStreams
	Store           func(context.Context) (budgetStore, error)
	Now             func() time.Time
	Agent           string
	IncludeChildren bool
	Output          string
}

func newBudgetStatusCmd(f *Factory) *cobra.Command {
	opts := &budgetStatusOptions{IO: f.IO, Now: f.now, Store: func(ctx context.Context) (budgetStore, error) {
		return f.Store(ctx)
	}}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show limit, spent, reserved and remaining of every budget that binds an agent",
		Long: `Status lists every active policy of the agent and of each ancestor (an
ancestor's budget also binds its descendants), with the current window, the
limit, what is spent, what open reservations hold, what remains
(limit - spent - reserved, never below zero) and the percentage used
((spent + reserved) / limit, truncated to two decimals).

Without --agent it lists every active policy of every agent, once each.`,
		Example: `  caracal budget status
  caracal budget status --agent research-bot
  caracal budget status --agent research-bot --include-children -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBudgetStatus(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Agent, "agent", "", "only the budgets that bind this agent (name or ID)")
	cmd.Flags().BoolVar(&opts.IncludeChildren, "include-children", false, "with --agent: also every descendant's own budgets")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runBudgetStatus(ctx context.Context, opts *budgetStatusOptions) error {
	if opts.IncludeChildren && opts.Agent == "" {
		return Usagef("--include-children: requires --agent")
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	var ids []string
	if opts.Agent != "" {
		a, err := resolveAgent(ctx, st, "--agent", opts.Agent)
		if err != nil {
			return err
		}
		ids = []string{a.ID}
		if opts.IncludeChildren {
			all, err := st.ListAgents(ctx)
			if err != nil {
				return fmt.Errorf("list agents: %w", err)
			}
			ids = policy.Descendants(all, a.ID)
		}
	} else {
		all, err := st.ListAgents(ctx)
		if err != nil {
			return fmt.Errorf("list agents: %w", err)
		}
		for _, a := range all {
			ids = append(ids, a.ID)
		}
	}
	budgets, err := ledger.Budgets(ctx, st, opts.Now(), ids)
	if err != nil {
		return err
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, budgets)
	}
	return printBudgetTable(opts.IO.Out, budgets)
}

// printBudgetTable prints budgets one a row. A calendar window shows when
// it started and resets; a rolling one how far back it reaches.
func printBudgetTable(w io.Writer, budgets []policy.Budget) error {
	t := newTable(w, "agent", "policy", "window", "since", "resets", "limit", "spent", "reserved", "remaining", "used", "currency")
	for _, b := range budgets {
		window := string(b.Window)
		since, resets := "-", "never"
		if b.WindowStart != nil {
			since = formatTime(*b.WindowStart)
		}
		switch {
		case b.ResetsAt != nil:
			window += " (calendar)"
			resets = formatTime(*b.ResetsAt)
		case b.Span > 0:
			window += " (rolling " + formatSpan(b.Span) + ")"
			resets = "rolling"
		}
		t.row(b.Agent, b.PolicyID, window, since, resets, b.Limit.String(), b.Spent.String(), b.Reserved.String(),
			b.Remaining.String(), string(b.PercentUsed)+"%", b.Currency)
	}
	return t.flush()
}

// formatSpan prints a rolling window's reach: "1h", "24h", "7d", "30d".
func formatSpan(d time.Duration) string {
	if d >= 48*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return fmt.Sprintf("%dh", d/time.Hour)
}
