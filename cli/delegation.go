package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
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

// delegationStore is what the delegation commands need.
type delegationStore interface {
	ledger.Agents
	ledger.Policies
	ledger.Delegations
}

func delegationStoreFunc(f *Factory) func(context.Context) (delegationStore, error) {
	return func(ctx context.Context) (delegationStore, error) { return f.Store(ctx) }
}

type delegationCreateOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (delegationStore, error)
	MaxDepth func() (int, error)
	Parent   string
	Child    string
	Budget   budgetFlags
	Output   string
}

func newDelegationCreateCmd(f *Factory) *cobra.Command {
	opts := &delegationCreateOptions{IO: f.IO, Store: delegationStoreFunc(f), MaxDepth: maxDepthFunc(f)}
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
	// Resolved here only to blame the right flag for an unknown agent and
	// to print names; every rule is the store's.
	parent, err := resolveAgent(ctx, st, "--parent", opts.Parent)
	if err != nil {
		return err
	}
	child, err := resolveAgent(ctx, st, "--child", opts.Child)
	if err != nil {
		return err
	}
	p, err := st.CreateDelegation(ctx, ledger.NewDelegation{Parent: parent.ID, Child: child.ID, Policy: np, MaxDepth: maxDepth})
	if err != nil {
		var deep *ledger.ChainDepthError
		switch {
		case errors.As(err, &deep):
			return depthError("--child", deep, maxDepth)
		case errors.Is(err, ledger.ErrDelegateToSelf):
			return Usagef("--child: %w", err)
		case errors.Is(err, ledger.ErrOverParentLimit):
			return Usagef("--limit: %w", err)
		case errors.Is(err, ledger.ErrConflict):
			return fmt.Errorf("--child: %w", err)
		}
		return fmt.Errorf("create delegation from %q to %q: %w", parent.Name, child.Name, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, ledger.ViewDelegation(p, parent.Name, child.Name))
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

// depthError words the store's chain-depth refusal in terms of the
// configuration key that set the limit.
func depthError(flag string, e *ledger.ChainDepthError, maxDepth int) error {
	if e.Max != maxDepth {
		// The store's own cap, lower than delegation.max_depth, refused it.
		return fmt.Errorf("%s: %w", flag, e)
	}
	return fmt.Errorf("%s: the chain would hold %d agents (%s), more than delegation.max_depth %d", flag, e.Agents, e.Path, maxDepth)
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
	ds := []ledger.DelegationView{}
	for _, p := range pols {
		if p.DelegatedFrom == "" || (agentID != "" && p.AgentID != agentID && p.DelegatedFrom != agentID) {
			continue
		}
		ds = append(ds, ledger.ViewDelegation(p, names[p.DelegatedFrom], names[p.AgentID]))
	}
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, []string{d.PolicyID, d.Parent, d.Child, d.Limit, d.Currency, string(d.Window), string(d.WindowType), d.Status})
	}
	return printRows(opts.IO.Out, opts.Output, ds, []string{"policy", "parent", "child", "limit", "currency", "window", "type", "status"}, rows)
}

type delegationRevokeOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (delegationStore, error)
	PolicyID string
	Output   string
}

func newDelegationRevokeCmd(f *Factory) *cobra.Command {
	opts := &delegationRevokeOptions{IO: f.IO, Store: delegationStoreFunc(f)}
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
	p, err := st.RevokeDelegation(ctx, opts.PolicyID)
	if err != nil {
		switch {
		case errors.Is(err, ledger.ErrNotDelegation):
			return fmt.Errorf("%w; use caracal policy deactivate", err)
		case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrConflict):
			return err
		}
		return fmt.Errorf("revoke delegation %q: %w", opts.PolicyID, err)
	}
	d := ledger.ViewDelegation(p, agentNameOf(ctx, st, p.DelegatedFrom), agentNameOf(ctx, st, p.AgentID))
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, d)
	}
	fmt.Fprintf(opts.IO.Out, "Delegation %s from %s to %s revoked (version %d, limit 0).\n", d.PolicyID, d.Parent, d.Child, d.Version)
	return nil
}
