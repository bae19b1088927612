package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// policyStore is what the policy and delegation commands need.
type policyStore interface {
	ledger.Agents
	ledger.Policies
}

func policyStoreFunc(f *Factory) func(context.Context) (policyStore, error) {
	return func(ctx context.Context) (policyStore, error) { return f.Store(ctx) }
}

func newPolicyCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Create and manage budgets on agents",
		Long: `A policy is a budget on one agent: a limit in a currency over a window
(total, hourly, daily, weekly or monthly), either calendar-aligned in a time
zone or rolling, with an optional allowlist of resource patterns. An agent
may have several policies and every one must pass, along with every policy
of every ancestor. Updates write a new version; history keeps them all.`,
	}
	cmd.AddCommand(
		newPolicyCreateCmd(f),
		newPolicyListCmd(f),
		newPolicyGetCmd(f),
		newPolicyUpdateCmd(f),
		newPolicyDeactivateCmd(f),
		newPolicyHistoryCmd(f),
	)
	return cmd
}

// budgetFlags are the flags that shape a budget, shared by policy create,
// policy update and delegation create.
type budgetFlags struct {
	Limit      string
	Currency   string
	Window     string
	WindowType string
	Timezone   string
	Allow      []string
}

func addBudgetFlags(cmd *cobra.Command, b *budgetFlags, withAllow bool) {
	fl := cmd.Flags()
	fl.StringVar(&b.Limit, "limit", "", "budget limit, a decimal amount such as 25 or 0.50")
	fl.StringVar(&b.Currency, "currency", money.DefaultCurrency, "three-letter currency code")
	fl.StringVar(&b.Window, "window", string(policy.WindowDaily), "window: total, hourly, daily, weekly or monthly")
	fl.StringVar(&b.WindowType, "window-type", string(policy.WindowCalendar), "calendar (aligned in --timezone) or rolling")
	fl.StringVar(&b.Timezone, "timezone", "UTC", "IANA time zone calendar windows align in, such as Europe/Paris")
	if withAllow {
		fl.StringArrayVar(&b.Allow, "allow", nil, "resource pattern the agent may use, such as 'mcp:fs/*' (repeatable; default: everything)")
	}
}

// parseAmount parses a non-negative decimal amount given in flag.
func parseAmount(flag, s string) (money.Amount, error) {
	a, err := nonNegativeAmount(s)
	if err != nil {
		return 0, Usagef("%s: %v", flag, err)
	}
	return a, nil
}

// nonNegativeAmount reads a decimal amount that is not negative.
func nonNegativeAmount(s string) (money.Amount, error) {
	a, err := money.Parse(strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	if a.IsNegative() {
		return 0, fmt.Errorf("invalid amount %q: must not be negative", s)
	}
	return a, nil
}

func parseWindow(s string) (policy.Window, error) {
	switch w := policy.Window(s); w {
	case policy.WindowTotal, policy.WindowHourly, policy.WindowDaily, policy.WindowWeekly, policy.WindowMonthly:
		return w, nil
	}
	return "", Usagef("--window: invalid window %q: want total, hourly, daily, weekly or monthly", s)
}

func parseWindowType(s string) (policy.WindowType, error) {
	switch t := policy.WindowType(s); t {
	case policy.WindowCalendar, policy.WindowRolling:
		return t, nil
	}
	return "", Usagef("--window-type: invalid window type %q: want calendar or rolling", s)
}

func parseTimezone(s string) (string, error) {
	// "Local" depends on the machine that happens to evaluate the policy,
	// so it is refused like any unknown name.
	if _, err := time.LoadLocation(s); err != nil || s == "" || s == "Local" {
		return "", Usagef("--timezone: unknown time zone %q: want an IANA name such as UTC or America/New_York", s)
	}
	return s, nil
}

func parseCurrency(flag, s string) (string, error) {
	code, err := money.ParseCurrency(s)
	if err != nil {
		return "", Usagef("%s: %v", flag, err)
	}
	return code, nil
}

func parsePatterns(flag string, pats []string) ([]string, error) {
	for _, p := range pats {
		if err := policy.ValidateResourcePattern(p); err != nil {
			return nil, Usagef("%s: invalid pattern %q: want a resource pattern without spaces such as 'mcp:fs/*'", flag, p)
		}
	}
	return pats, nil
}

// newPolicy validates every budget flag before anything is written.
func (b *budgetFlags) newPolicy(agentID string) (ledger.NewPolicy, error) {
	if b.Limit == "" {
		return ledger.NewPolicy{}, Usagef("--limit: required")
	}
	lim, err := parseAmount("--limit", b.Limit)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	cur, err := parseCurrency("--currency", b.Currency)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	win, err := parseWindow(b.Window)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	wt, err := parseWindowType(b.WindowType)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	tz, err := parseTimezone(b.Timezone)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	allow, err := parsePatterns("--allow", b.Allow)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	return ledger.NewPolicy{AgentID: agentID, Limit: lim, Currency: cur, Window: win, WindowType: wt, Timezone: tz, Allow: allow}, nil
}

type policyCreateOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (policyStore, error)
	Agent  string
	Budget budgetFlags
	Output string
}

func newPolicyCreateCmd(f *Factory) *cobra.Command {
	opts := &policyCreateOptions{IO: f.IO, Store: policyStoreFunc(f)}
	cmd := &cobra.Command{
		Use:   "create --agent NAME|ID --limit AMOUNT",
		Short: "Put a budget on an agent",
		Example: `  # $25 a day, calendar days in UTC
  caracal policy create --agent research-bot --limit 25

  # 100 EUR a month aligned on Paris time, only the filesystem tools
  caracal policy create --agent research-bot --limit 100 --currency EUR \
    --window monthly --timezone Europe/Paris --allow 'mcp:fs/*'

  # $5 over any trailing hour
  caracal policy create --agent research-bot --limit 5 --window hourly --window-type rolling`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPolicyCreate(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Agent, "agent", "", "agent name or ID")
	addBudgetFlags(cmd, &opts.Budget, true)
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPolicyCreate(ctx context.Context, opts *policyCreateOptions) error {
	if opts.Agent == "" {
		return Usagef("--agent: required")
	}
	np, err := opts.Budget.newPolicy("")
	if err != nil {
		return err
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	a, err := resolveAgent(ctx, st, "--agent", opts.Agent)
	if err != nil {
		return err
	}
	np.AgentID = a.ID
	p, err := st.CreatePolicy(ctx, np)
	if err != nil {
		return fmt.Errorf("create policy on %q: %w", a.Name, err)
	}
	return printPolicy(opts.IO.Out, opts.Output, p, a.Name)
}

func printPolicy(w io.Writer, format string, p policy.Policy, agentName string) error {
	if format == FormatJSON {
		return printJSON(w, p)
	}
	delegated := "-"
	if p.DelegatedFrom != "" {
		delegated = p.DelegatedFrom
	}
	return printKV(w,
		[2]string{"ID", p.ID},
		[2]string{"Agent", agentName},
		[2]string{"Version", fmt.Sprint(p.Version)},
		[2]string{"Limit", p.Limit.String() + " " + p.Currency},
		[2]string{"Window", string(p.Window) + " (" + string(p.WindowType) + ")"},
		[2]string{"Time zone", p.Timezone},
		[2]string{"Allow", allowLabel(p.Allow)},
		[2]string{"Active", fmt.Sprint(p.Active)},
		[2]string{"Delegated from", delegated},
		[2]string{"Created", formatTime(p.CreatedAt)},
	)
}

func allowLabel(a []string) string {
	if len(a) == 0 {
		return "*"
	}
	return strings.Join(a, ",")
}

var policyHeaders = []string{"id", "agent", "version", "limit", "currency", "window", "type", "timezone", "allow", "active"}

func policyRow(p policy.Policy, names map[string]string) []string {
	agent := names[p.AgentID]
	if agent == "" {
		agent = p.AgentID
	}
	return []string{p.ID, agent, fmt.Sprint(p.Version), p.Limit.String(), p.Currency, string(p.Window),
		string(p.WindowType), p.Timezone, allowLabel(p.Allow), fmt.Sprint(p.Active)}
}

func printPolicyTable(w io.Writer, pols []policy.Policy, names map[string]string) error {
	t := newTable(w, policyHeaders...)
	for _, p := range pols {
		t.row(policyRow(p, names)...)
	}
	return t.flush()
}

// agentNames maps agent IDs to names for tables.
func agentNames(ctx context.Context, st ledger.Agents) (map[string]string, error) {
	agents, err := st.ListAgents(ctx)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	m := make(map[string]string, len(agents))
	for _, a := range agents {
		m[a.ID] = a.Name
	}
	return m, nil
}

type policyListOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (policyStore, error)
	Agent    string
	Inactive bool
	Output   string
}

func newPolicyListCmd(f *Factory) *cobra.Command {
	opts := &policyListOptions{IO: f.IO, Store: policyStoreFunc(f)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List policies",
		Example: `  caracal policy list
  caracal policy list --agent research-bot --all -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPolicyList(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Agent, "agent", "", "only this agent's policies (name or ID)")
	cmd.Flags().BoolVar(&opts.Inactive, "all", false, "include deactivated policies")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPolicyList(ctx context.Context, opts *policyListOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	agentID, err := optionalAgentID(ctx, st, "--agent", opts.Agent)
	if err != nil {
		return err
	}
	pols, err := st.ListPolicies(ctx, agentID, opts.Inactive)
	if err != nil {
		return fmt.Errorf("list policies: %w", err)
	}
	pols = nonNil(pols)
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, pols)
	}
	names, err := agentNames(ctx, st)
	if err != nil {
		return err
	}
	return printPolicyTable(opts.IO.Out, pols, names)
}

// getPolicy reads a policy, reporting an unknown ID plainly.
func getPolicy(ctx context.Context, st ledger.Policies, id string) (policy.Policy, error) {
	p, err := st.GetPolicy(ctx, id)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) || errors.Is(err, ledger.ErrInvalid) {
			return policy.Policy{}, fmt.Errorf("policy %q not found", id)
		}
		return policy.Policy{}, fmt.Errorf("read policy %q: %w", id, err)
	}
	return p, nil
}

func agentNameOf(ctx context.Context, st ledger.Agents, id string) string {
	if a, err := st.GetAgent(ctx, id); err == nil {
		return a.Name
	}
	return id
}

type policyGetOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (policyStore, error)
	ID     string
	Output string
}

func newPolicyGetCmd(f *Factory) *cobra.Command {
	opts := &policyGetOptions{IO: f.IO, Store: policyStoreFunc(f)}
	cmd := &cobra.Command{
		Use:     "get ID",
		Short:   "Show a policy's current version",
		Example: `  caracal policy get 0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f -o json`,
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			return runPolicyGet(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPolicyGet(ctx context.Context, opts *policyGetOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	p, err := getPolicy(ctx, st, opts.ID)
	if err != nil {
		return err
	}
	return printPolicy(opts.IO.Out, opts.Output, p, agentNameOf(ctx, st, p.AgentID))
}

type policyUpdateOptions struct {
	IO         *IOStreams
	Store      func(context.Context) (policyStore, error)
	ID         string
	Budget     budgetFlags
	ClearAllow bool
	// Changed reports whether a flag was given; only those change.
	Changed func(name string) bool
	Output  string
}

func newPolicyUpdateCmd(f *Factory) *cobra.Command {
	opts := &policyUpdateOptions{IO: f.IO, Store: policyStoreFunc(f)}
	cmd := &cobra.Command{
		Use:   "update ID [flags]",
		Short: "Change a policy (writes a new version; usage carries over)",
		Example: `  caracal policy update 0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f --limit 50
  caracal policy update 0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f --allow 'mcp:fs/*' --allow 'llm:openai/gpt-4o*'
  caracal policy update 0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f --clear-allow`,
		Args: exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			opts.Changed = cmd.Flags().Changed
			return runPolicyUpdate(cmd.Context(), opts)
		},
	}
	addBudgetFlags(cmd, &opts.Budget, true)
	cmd.Flags().BoolVar(&opts.ClearAllow, "clear-allow", false, "remove the allowlist (allow every resource)")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPolicyUpdate(ctx context.Context, opts *policyUpdateOptions) error {
	changed := opts.Changed
	if changed == nil {
		changed = func(string) bool { return false }
	}
	if !changed("limit") && !changed("currency") && !changed("window") && !changed("window-type") &&
		!changed("timezone") && !changed("allow") && !opts.ClearAllow {
		return Usagef("policy update: nothing to change: give --limit, --currency, --window, --window-type, --timezone, --allow or --clear-allow")
	}
	if opts.ClearAllow && changed("allow") {
		return Usagef("--clear-allow: cannot be combined with --allow")
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	cur, err := getPolicy(ctx, st, opts.ID)
	if err != nil {
		return err
	}
	b := budgetFlags{Limit: cur.Limit.String(), Currency: cur.Currency, Window: string(cur.Window),
		WindowType: string(cur.WindowType), Timezone: cur.Timezone, Allow: cur.Allow}
	if changed("limit") {
		b.Limit = opts.Budget.Limit
	}
	if changed("currency") {
		b.Currency = opts.Budget.Currency
	}
	if changed("window") {
		b.Window = opts.Budget.Window
	}
	if changed("window-type") {
		b.WindowType = opts.Budget.WindowType
	}
	if changed("timezone") {
		b.Timezone = opts.Budget.Timezone
	}
	if changed("allow") {
		b.Allow = opts.Budget.Allow
	}
	if opts.ClearAllow {
		b.Allow = nil
	}
	np, err := b.newPolicy(cur.AgentID)
	if err != nil {
		return err
	}
	np.DelegatedFrom = cur.DelegatedFrom
	p, err := st.UpdatePolicy(ctx, cur.ID, np)
	if err != nil {
		return fmt.Errorf("update policy %q: %w", opts.ID, err)
	}
	return printPolicy(opts.IO.Out, opts.Output, p, agentNameOf(ctx, st, p.AgentID))
}

type policyDeactivateOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (policyStore, error)
	Config func() (*Config, error)
	ID     string
	Output string
}

func newPolicyDeactivateCmd(f *Factory) *cobra.Command {
	opts := &policyDeactivateOptions{IO: f.IO, Store: policyStoreFunc(f), Config: f.Config}
	cmd := &cobra.Command{
		Use:     "deactivate ID",
		Short:   "Deactivate a policy (its history is kept)",
		Example: `  caracal policy deactivate 0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f`,
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			return runPolicyDeactivate(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPolicyDeactivate(ctx context.Context, opts *policyDeactivateOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	if _, err := getPolicy(ctx, st, opts.ID); err != nil {
		return err
	}
	p, err := st.DeactivatePolicy(ctx, opts.ID)
	if err != nil {
		return fmt.Errorf("deactivate policy %q: %w", opts.ID, err)
	}
	warnIfUnbudgeted(ctx, opts, st, p.AgentID)
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, p)
	}
	fmt.Fprintf(opts.IO.Out, "Policy %s deactivated (version %d).\n", p.ID, p.Version)
	return nil
}

// warnIfUnbudgeted tells the operator on stderr when the agent has no
// active policy left on its chain, so that its calls are now refused (or,
// under enforcement.unbudgeted: allow, unlimited).
func warnIfUnbudgeted(ctx context.Context, opts *policyDeactivateOptions, st policyStore, agentID string) {
	id, name := agentID, ""
	for depth := 0; id != "" && depth < 100; depth++ {
		ps, err := st.ListPolicies(ctx, id, false)
		if err != nil || len(ps) > 0 {
			return
		}
		a, err := st.GetAgent(ctx, id)
		if err != nil {
			return
		}
		if name == "" {
			name = a.Name
		}
		id = a.ParentID
	}
	mode := UnbudgetedRefuse
	if opts.Config != nil {
		if cfg, err := opts.Config(); err == nil {
			mode = cfg.Enforcement.Unbudgeted
		}
	}
	if mode == UnbudgetedAllow {
		fmt.Fprintf(opts.IO.ErrOut, "warning: agent %q has no active policy left on its chain; under enforcement.unbudgeted: allow its calls are now unlimited.\n", name)
		return
	}
	fmt.Fprintf(opts.IO.ErrOut, "warning: agent %q has no active policy left on its chain; its calls will now be refused (no_budget).\n", name)
}

type policyHistoryOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (policyStore, error)
	ID     string
	Output string
}

func newPolicyHistoryCmd(f *Factory) *cobra.Command {
	opts := &policyHistoryOptions{IO: f.IO, Store: policyStoreFunc(f)}
	cmd := &cobra.Command{
		Use:     "history ID",
		Short:   "List every version of a policy, oldest first",
		Example: `  caracal policy history 0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f -o json`,
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			return runPolicyHistory(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPolicyHistory(ctx context.Context, opts *policyHistoryOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	if _, err := getPolicy(ctx, st, opts.ID); err != nil {
		return err
	}
	vs, err := st.PolicyHistory(ctx, opts.ID)
	if err != nil {
		return fmt.Errorf("policy history %q: %w", opts.ID, err)
	}
	vs = nonNil(vs)
	rows := make([][]string, 0, len(vs))
	for _, p := range vs {
		rows = append(rows, []string{fmt.Sprint(p.Version), p.Limit.String(), p.Currency, string(p.Window),
			string(p.WindowType), p.Timezone, allowLabel(p.Allow), fmt.Sprint(p.Active), formatTime(p.CreatedAt)})
	}
	return printRows(opts.IO.Out, opts.Output, vs,
		[]string{"version", "limit", "currency", "window", "type", "timezone", "allow", "active", "created"}, rows)
}
