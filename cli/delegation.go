package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func newDelegationCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delegation",
		Short: "Carve budgets for child agents out of a parent's",
		Long: `A delegation makes an agent the child of another and gives it its own budget
(a policy marked as delegated from the parent). The child's spend counts
against its own budget and against every budget of every ancestor, checked
and reserved atomically. Chains hold at most delegation.max_depth agents
(default 5), the root included.`,
	}
	cmd.AddCommand(newDelegationCreateCmd(f), newDelegationListCmd(f), newDelegationRevokeCmd(f))
	return cmd
}

type delegationCreateOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (policyStore, error)
	MaxDepth func() (int, error)
	Parent   string
	Child    string
	Budget   budgetFlags
	Output   string
}

func newDelegationCreateCmd(f *Factory) *cobra.Command {
	opts := &delegationCreateOptions{IO: f.IO, Store: policyStoreFunc(f), MaxDepth: maxDepthFunc(f)}
	cmd := &cobra.Command{
		Use:   "create --parent NAME|ID --child NAME|ID --limit AMOUNT",
		Short: "Give a child agent a budget carved from its parent's",
		Example: `  # research-bot may let summariser spend up to $5 of its own budget each day
  caracal delegation create --parent research-bot --child summariser --limit 5

  caracal delegation create --parent research-bot --child crawler --limit 20 --window weekly --window-type rolling`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDelegationCreate(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Parent, "parent", "", "parent agent (name or ID)")
	cmd.Flags().StringVar(&opts.Child, "child", "", "child agent (name or ID); becomes the parent's child if it has no parent")
	addBudgetFlags(cmd, &opts.Budget, true)
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runDelegationCreate(ctx context.Context, opts *delegationCreateOptions) error {
	if opts.Parent == "" {
		return Usagef("--parent: required")
	}
	if opts.Child == "" {
		return Usagef("--child: required")
	}
	np, err := opts.Budget.newPolicy("")
	if err != nil {
		return err
	}
	maxDepth, err := opts.MaxDepth()
	if err != nil {
		return err
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	parent, err := resolveAgent(ctx, st, "--parent", opts.Parent)
	if err != nil {
		return err
	}
	child, err := resolveAgent(ctx, st, "--child", opts.Child)
	if err != nil {
		return err
	}
	if parent.ID == child.ID {
		return Usagef("--child: an agent cannot delegate to itself")
	}
	if child.ParentID != "" && child.ParentID != parent.ID {
		return fmt.Errorf("--child: agent %q already has parent %q; delegate from that parent", child.Name, agentNameOf(ctx, st, child.ParentID))
	}
	chain, err := st.Chain(ctx, parent.ID)
	if err != nil {
		return fmt.Errorf("read the chain of %q: %w", parent.Name, err)
	}
	for _, a := range chain {
		if a.ID == child.ID {
			return fmt.Errorf("--child: agent %q is an ancestor of %q: delegating would make a cycle", child.Name, parent.Name)
		}
	}
	agents, err := st.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("list agents: %w", err)
	}
	if depth := len(chain) + subtreeHeight(agents, child.ID); depth > maxDepth {
		return fmt.Errorf("--child: the chain would hold %d agents (%s → %s…), more than delegation.max_depth %d",
			depth, chainLabel(chain), child.Name, maxDepth)
	}
	// A child may not be granted more than its parent can spend in the
	// same window and currency: the grant would be unenforceable anyway.
	parentPols, err := st.ListPolicies(ctx, parent.ID, false)
	if err != nil {
		return fmt.Errorf("list policies of %q: %w", parent.Name, err)
	}
	for _, pp := range parentPols {
		if pp.Window == np.Window && pp.Currency == np.Currency && np.Limit > pp.Limit {
			return Usagef("--limit: %s %s exceeds parent %q's %s limit of %s %s",
				np.Limit, np.Currency, parent.Name, pp.Window, pp.Limit, pp.Currency)
		}
	}

	reparented := false
	if child.ParentID == "" {
		if _, err := st.SetAgentParent(ctx, child.ID, parent.ID); err != nil {
			if errors.Is(err, ledger.ErrConflict) {
				return fmt.Errorf("--child: %w", err)
			}
			return fmt.Errorf("make %q a child of %q: %w", child.Name, parent.Name, err)
		}
		reparented = true
	}
	np.AgentID, np.DelegatedFrom = child.ID, parent.ID
	p, err := st.CreatePolicy(ctx, np)
	if err != nil {
		if reparented {
			// Nothing half-written: undo the parent link made above.
			if _, uerr := st.SetAgentParent(ctx, child.ID, ""); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undo parent of %q: %w", child.Name, uerr))
			}
		}
		return fmt.Errorf("create delegated policy: %w", err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, delegationOf(p, parent.Name, child.Name))
	}
	fmt.Fprintf(opts.IO.Out, "Delegated %s %s %s (%s) from %s to %s: policy %s.\n",
		p.Limit, p.Currency, p.Window, p.WindowType, parent.Name, child.Name, p.ID)
	return nil
}

// maxDepthFunc reads delegation.max_depth from the configuration.
func maxDepthFunc(f *Factory) func() (int, error) {
	return func() (int, error) {
		cfg, err := f.Config()
		if err != nil {
			return 0, err
		}
		return cfg.Delegation.MaxDepth, nil
	}
}

// subtreeHeight counts the agents on the longest path from id down through
// its descendants, id included.
func subtreeHeight(agents []policy.Agent, id string) int {
	children := map[string][]string{}
	for _, a := range agents {
		if a.ParentID != "" {
			children[a.ParentID] = append(children[a.ParentID], a.ID)
		}
	}
	var height func(id string, seen map[string]bool) int
	height = func(id string, seen map[string]bool) int {
		if seen[id] {
			return 0
		}
		seen[id] = true
		h := 0
		for _, c := range children[id] {
			h = max(h, height(c, seen))
		}
		return h + 1
	}
	return height(id, map[string]bool{})
}

// chainLabel prints a chain root first: root → … → agent.
func chainLabel(chain []policy.Agent) string {
	names := make([]string, len(chain))
	for i, a := range chain {
		names[len(chain)-1-i] = a.Name
	}
	return strings.Join(names, " → ")
}

// delegation is one delegated policy as `delegation list` shows it.
type delegation struct {
	PolicyID   string            `json:"policy_id"`
	ParentID   string            `json:"parent_id"`
	Parent     string            `json:"parent"`
	ChildID    string            `json:"child_id"`
	Child      string            `json:"child"`
	Limit      string            `json:"limit"`
	Currency   string            `json:"currency"`
	Window     policy.Window     `json:"window"`
	WindowType policy.WindowType `json:"window_type"`
	Timezone   string            `json:"timezone"`
	Version    int               `json:"version"`
	// Status is active, revoked (limit set to zero) or inactive.
	Status string `json:"status"`
}

func delegationOf(p policy.Policy, parent, child string) delegation {
	status := "active"
	switch {
	case !p.Active:
		status = "inactive"
	case p.Limit == 0:
		status = "revoked"
	}
	return delegation{PolicyID: p.ID, ParentID: p.DelegatedFrom, Parent: parent, ChildID: p.AgentID, Child: child,
		Limit: p.Limit.String(), Currency: p.Currency, Window: p.Window, WindowType: p.WindowType,
		Timezone: p.Timezone, Version: p.Version, Status: status}
}

type delegationListOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (policyStore, error)
	Agent    string
	Inactive bool
	Output   string
}

func newDelegationListCmd(f *Factory) *cobra.Command {
	opts := &delegationListOptions{IO: f.IO, Store: policyStoreFunc(f)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List delegations",
		Example: `  caracal delegation list
  caracal delegation list --agent research-bot -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDelegationList(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Agent, "agent", "", "only delegations from or to this agent (name or ID)")
	cmd.Flags().BoolVar(&opts.Inactive, "all", false, "include deactivated delegations")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runDelegationList(ctx context.Context, opts *delegationListOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	agentID, err := optionalAgentID(ctx, st, "--agent", opts.Agent)
	if err != nil {
		return err
	}
	pols, err := st.ListPolicies(ctx, "", opts.Inactive)
	if err != nil {
		return fmt.Errorf("list policies: %w", err)
	}
	names, err := agentNames(ctx, st)
	if err != nil {
		return err
	}
	ds := []delegation{}
	for _, p := range pols {
		if p.DelegatedFrom == "" || (agentID != "" && p.AgentID != agentID && p.DelegatedFrom != agentID) {
			continue
		}
		ds = append(ds, delegationOf(p, names[p.DelegatedFrom], names[p.AgentID]))
	}
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, []string{d.PolicyID, d.Parent, d.Child, d.Limit, d.Currency, string(d.Window), string(d.WindowType), d.Status})
	}
	return printRows(opts.IO.Out, opts.Output, ds, []string{"policy", "parent", "child", "limit", "currency", "window", "type", "status"}, rows)
}

type delegationRevokeOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (policyStore, error)
	PolicyID string
	Output   string
}

func newDelegationRevokeCmd(f *Factory) *cobra.Command {
	opts := &delegationRevokeOptions{IO: f.IO, Store: policyStoreFunc(f)}
	cmd := &cobra.Command{
		Use:   "revoke POLICY_ID",
		Short: "Revoke a delegation: the child may spend nothing more under it",
		Long: `Revoke writes a new version of the delegated policy with a limit of zero, so
the child can spend nothing more from its parent's budget while the
delegation and its history stay on record. (Deactivating the policy instead
would leave the child bound only by its ancestors' budgets.)`,
		Example: `  caracal delegation revoke 0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f`,
		Args:    exactArgs(1, "POLICY_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.PolicyID = args[0]
			return runDelegationRevoke(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runDelegationRevoke(ctx context.Context, opts *delegationRevokeOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	p, err := getPolicy(ctx, st, opts.PolicyID)
	if err != nil {
		return err
	}
	if p.DelegatedFrom == "" {
		return fmt.Errorf("policy %q is not a delegation; use caracal policy deactivate", opts.PolicyID)
	}
	if !p.Active || p.Limit == 0 {
		return fmt.Errorf("delegation %q is already revoked", opts.PolicyID)
	}
	p, err = st.UpdatePolicy(ctx, p.ID, ledger.NewPolicy{AgentID: p.AgentID, Limit: 0, Currency: p.Currency,
		Window: p.Window, WindowType: p.WindowType, Timezone: p.Timezone, Allow: p.Allow, DelegatedFrom: p.DelegatedFrom})
	if err != nil {
		return fmt.Errorf("revoke delegation %q: %w", opts.PolicyID, err)
	}
	d := delegationOf(p, agentNameOf(ctx, st, p.DelegatedFrom), agentNameOf(ctx, st, p.AgentID))
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, d)
	}
	fmt.Fprintf(opts.IO.Out, "Delegation %s from %s to %s revoked (version %d, limit 0).\n", d.PolicyID, d.Parent, d.Child, d.Version)
	return nil
}
