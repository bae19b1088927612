package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// agentStore is what the agent commands need.
type agentStore interface {
	ledger.Agents
	ledger.Policies
	Usage(ctx context.Context, agentID string, now time.Time) ([]policy.PolicyUsage, error)
}

func newAgentCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Register and manage agents and their API keys",
		Long: `Agents are the principals that spend money. Each has a unique name, an
owner, an optional parent (its spend also counts against every ancestor's
budgets), a status and API keys.`,
	}
	cmd.AddCommand(
		newAgentRegisterCmd(f),
		newAgentListCmd(f),
		newAgentGetCmd(f),
		newAgentStatusCmd(f, policy.StatusSuspended),
		newAgentStatusCmd(f, policy.StatusActive),
		newAgentKeyCmd(f),
	)
	return cmd
}

func agentStoreFunc(f *Factory) func(context.Context) (agentStore, error) {
	return func(ctx context.Context) (agentStore, error) { return f.Store(ctx) }
}

type agentRegisterOptions struct {
	IO    *IOStreams
	Store func(context.Context) (agentStore, error)
	// MaxDepth is delegation.max_depth: the longest chain --parent may make.
	MaxDepth func() (int, error)
	Name     string
	Owner    string
	Parent   string
	Metadata []string
	Output   string
}

func newAgentRegisterCmd(f *Factory) *cobra.Command {
	opts := &agentRegisterOptions{IO: f.IO, Store: agentStoreFunc(f), MaxDepth: maxDepthFunc(f)}
	cmd := &cobra.Command{
		Use:   "register --name NAME --owner OWNER",
		Short: "Register a new agent",
		Example: `  caracal agent register --name research-bot --owner alice@example.com
  caracal agent register --name summariser --owner alice@example.com --parent research-bot
  caracal agent register --name ci-agent --owner platform --metadata team=infra --metadata env=prod -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgentRegister(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Name, "name", "", "unique agent name (letters, digits, '.', '_', '-')")
	cmd.Flags().StringVar(&opts.Owner, "owner", "", "who is responsible for the agent")
	cmd.Flags().StringVar(&opts.Parent, "parent", "", "parent agent (name or ID); its budgets also cover this agent")
	cmd.Flags().StringArrayVar(&opts.Metadata, "metadata", nil, "metadata entry KEY=VALUE (repeatable)")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAgentRegister(ctx context.Context, opts *agentRegisterOptions) error {
	if opts.Name == "" {
		return Usagef("--name: required")
	}
	if err := policy.ValidateAgentName(opts.Name); err != nil {
		return Usagef("--name: %w", err)
	}
	if strings.TrimSpace(opts.Owner) == "" {
		return Usagef("--owner: required")
	}
	if err := policy.ValidateText(opts.Owner); err != nil {
		return Usagef("--owner: %w", err)
	}
	meta, err := parseKV("--metadata", opts.Metadata)
	if err != nil {
		return err
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	na := ledger.NewAgent{Name: opts.Name, Owner: strings.TrimSpace(opts.Owner), Metadata: meta}
	if opts.Parent != "" {
		p, err := resolveAgent(ctx, st, "--parent", opts.Parent)
		if err != nil {
			return err
		}
		na.ParentID = p.ID
		if opts.MaxDepth != nil {
			if na.MaxDepth, err = opts.MaxDepth(); err != nil {
				return err
			}
		}
	}
	a, err := st.CreateAgent(ctx, na)
	if err != nil {
		var deep *ledger.ChainDepthError
		switch {
		case errors.As(err, &deep):
			return depthError("--parent", deep, na.MaxDepth)
		case errors.Is(err, ledger.ErrConflict):
			return fmt.Errorf("--name: agent %q already exists", opts.Name)
		case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrInvalid) && na.ParentID != "":
			return fmt.Errorf("--parent: agent %q not found", opts.Parent)
		}
		return fmt.Errorf("register agent %q: %w", opts.Name, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, a)
	}
	return printAgent(opts.IO.Out, a, parentLabel(ctx, st, a))
}

// parseKV parses KEY=VALUE entries of a repeatable flag.
func parseKV(flag string, entries []string) (map[string]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		k, v, ok := strings.Cut(e, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, Usagef("%s: invalid entry %q: want KEY=VALUE", flag, e)
		}
		if _, dup := m[k]; dup {
			return nil, Usagef("%s: key %q given twice", flag, k)
		}
		if err := policy.ValidateText(e); err != nil {
			return nil, Usagef("%s: entry %q: %w", flag, e, err)
		}
		m[k] = v
	}
	return m, nil
}

// optionalAgentID resolves an optional agent flag to an ID; "" stays "".
func optionalAgentID(ctx context.Context, st ledger.Agents, flag, nameOrID string) (string, error) {
	if nameOrID == "" {
		return "", nil
	}
	a, err := resolveAgent(ctx, st, flag, nameOrID)
	return a.ID, err
}

// resolveAgent finds an agent by name or ID; not found is reported against
// flag. An empty flag is a positional argument: the error then names only
// the agent ("agent "x" not found", not "agent: agent "x" not found").
func resolveAgent(ctx context.Context, st ledger.Agents, flag, nameOrID string) (policy.Agent, error) {
	if strings.TrimSpace(nameOrID) == "" {
		if flag == "" {
			return policy.Agent{}, Usagef("missing agent name or ID")
		}
		return policy.Agent{}, Usagef("%s: required", flag)
	}
	a, err := st.GetAgent(ctx, nameOrID)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			if flag == "" {
				return policy.Agent{}, fmt.Errorf("agent %q not found", nameOrID)
			}
			return policy.Agent{}, fmt.Errorf("%s: agent %q not found", flag, nameOrID)
		}
		return policy.Agent{}, fmt.Errorf("find agent %q: %w", nameOrID, err)
	}
	return a, nil
}

// parentLabel names an agent's parent for tables: its name, else its ID.
func parentLabel(ctx context.Context, st ledger.Agents, a policy.Agent) string {
	if a.ParentID == "" {
		return "-"
	}
	if p, err := st.GetAgent(ctx, a.ParentID); err == nil {
		return p.Name
	}
	return a.ParentID
}

func printAgent(w io.Writer, a policy.Agent, parent string) error {
	return printKV(w,
		[2]string{"ID", a.ID},
		[2]string{"Name", a.Name},
		[2]string{"Owner", a.Owner},
		[2]string{"Parent", parent},
		[2]string{"Status", string(a.Status)},
		[2]string{"Metadata", formatMetadata(a.Metadata)},
		[2]string{"Created", formatTime(a.CreatedAt)},
	)
}

func formatMetadata(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

type agentListOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (agentStore, error)
	Output string
}

func newAgentListCmd(f *Factory) *cobra.Command {
	opts := &agentListOptions{IO: f.IO, Store: agentStoreFunc(f)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List agents",
		Example: `  caracal agent list
  caracal agent list -o json | jq -r '.[].name'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgentList(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAgentList(ctx context.Context, opts *agentListOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	agents, err := st.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("list agents: %w", err)
	}
	if agents == nil {
		agents = []policy.Agent{}
	}
	names := make(map[string]string, len(agents))
	for _, a := range agents {
		names[a.ID] = a.Name
	}
	rows := make([][]string, 0, len(agents))
	for _, a := range agents {
		parent := "-"
		if a.ParentID != "" {
			parent = names[a.ParentID]
		}
		rows = append(rows, []string{a.ID, a.Name, a.Owner, parent, string(a.Status), formatTime(a.CreatedAt)})
	}
	return printRows(opts.IO.Out, opts.Output, agents, []string{"id", "name", "owner", "parent", "status", "created"}, rows)
}

// agentDetail is `agent get`'s JSON: the agent, its keys, its policies and
// the status of every budget that binds it (as `budget status --agent`).
type agentDetail struct {
	policy.Agent
	Keys     []policy.APIKey `json:"keys"`
	Policies []policy.Policy `json:"policies"`
	Budgets  []policy.Budget `json:"budgets"`
}

type agentGetOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (agentStore, error)
	Now    func() time.Time
	Agent  string
	Output string
}

func newAgentGetCmd(f *Factory) *cobra.Command {
	opts := &agentGetOptions{IO: f.IO, Store: agentStoreFunc(f), Now: f.now}
	cmd := &cobra.Command{
		Use:   "get NAME|ID",
		Short: "Show an agent with its keys and active policies",
		Example: `  caracal agent get research-bot
  caracal agent get research-bot -o json`,
		Args: exactArgs(1, "NAME|ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Agent = args[0]
			return runAgentGet(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAgentGet(ctx context.Context, opts *agentGetOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	a, err := resolveAgent(ctx, st, "", opts.Agent)
	if err != nil {
		return err
	}
	keys, err := st.ListKeys(ctx, a.ID)
	if err != nil {
		return fmt.Errorf("list keys of %q: %w", a.Name, err)
	}
	pols, err := st.ListPolicies(ctx, a.ID, false)
	if err != nil {
		return fmt.Errorf("list policies of %q: %w", a.Name, err)
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	budgets, err := ledger.Budgets(ctx, st, now, []string{a.ID})
	if err != nil {
		return err
	}
	d := agentDetail{Agent: a, Keys: nonNil(keys), Policies: nonNil(pols), Budgets: budgets}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, d)
	}
	w := opts.IO.Out
	if err := printAgent(w, a, parentLabel(ctx, st, a)); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Keys:")
	kt := newTable(w, "id", "prefix", "created", "expires", "revoked")
	for _, k := range d.Keys {
		kt.row(k.ID, k.Prefix, formatTime(k.CreatedAt), formatTimePtr(k.ExpiresAt), formatTimePtr(k.RevokedAt))
	}
	if err := kt.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Policies:")
	if err := printPolicyTable(w, d.Policies, map[string]string{a.ID: a.Name}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Budgets (this agent's and its ancestors'):")
	return printBudgetTable(w, d.Budgets)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

type agentStatusOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (agentStore, error)
	Agent  string
	Status policy.AgentStatus
	Output string
}

func newAgentStatusCmd(f *Factory, s policy.AgentStatus) *cobra.Command {
	opts := &agentStatusOptions{IO: f.IO, Store: agentStoreFunc(f), Status: s}
	cmd := &cobra.Command{
		Use:   "suspend NAME|ID",
		Short: "Suspend an agent: every call it or its descendants make is refused",
		Example: `  caracal agent suspend research-bot
  caracal agent resume research-bot`,
		Args: exactArgs(1, "NAME|ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Agent = args[0]
			return runAgentStatus(cmd.Context(), opts)
		},
	}
	if s == policy.StatusActive {
		cmd.Use = "resume NAME|ID"
		cmd.Short = "Resume a suspended agent"
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAgentStatus(ctx context.Context, opts *agentStatusOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	a, err := resolveAgent(ctx, st, "", opts.Agent)
	if err != nil {
		return err
	}
	a, err = st.SetAgentStatus(ctx, a.ID, opts.Status)
	if err != nil {
		return fmt.Errorf("set status of %q: %w", opts.Agent, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, a)
	}
	fmt.Fprintf(opts.IO.Out, "Agent %s is %s.\n", a.Name, a.Status)
	return nil
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef("%s: unexpected argument %q", cmd.CommandPath(), args[0])
	}
	return nil
}

// exactArgs requires n positional arguments, described by what.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return Usagef("%s: missing argument %s", cmd.CommandPath(), what)
		case len(args) > n:
			return Usagef("%s: unexpected argument %q", cmd.CommandPath(), args[n])
		}
		return nil
	}
}
