package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func newAgentKeyCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create, list and revoke agent API keys",
		Long: `An agent key (crk_…) is how an agent authenticates to caracal mcp --listen
and caracal proxy. It is shown once, when created; only its SHA-256 hash is
stored.`,
	}
	cmd.AddCommand(newAgentKeyCreateCmd(f), newAgentKeyListCmd(f), newAgentKeyRevokeCmd(f))
	return cmd
}

// createdKey is `agent key create`'s JSON. Key is the secret, shown once.
type createdKey struct {
	policy.APIKey
	AgentName string `json:"agent_name"`
	Key       string `json:"key"`
}

type agentKeyCreateOptions struct {
	IO      *IOStreams
	Store   func(context.Context) (agentStore, error)
	Now     func() time.Time
	Agent   string
	Expires string
	Output  string
}

func newAgentKeyCreateCmd(f *Factory) *cobra.Command {
	opts := &agentKeyCreateOptions{IO: f.IO, Store: agentStoreFunc(f), Now: f.now}
	cmd := &cobra.Command{
		Use:   "create --agent NAME|ID",
		Short: "Create an API key for an agent (shown once)",
		Example: `  caracal agent key create --agent research-bot
  caracal agent key create --agent research-bot --expires 30d -o json | jq -r .key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgentKeyCreate(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Agent, "agent", "", "agent name or ID")
	cmd.Flags().StringVar(&opts.Expires, "expires", "", "lifetime such as 720h or 30d (default: never expires)")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAgentKeyCreate(ctx context.Context, opts *agentKeyCreateOptions) error {
	if opts.Agent == "" {
		return Usagef("--agent: required")
	}
	var expiresAt *time.Time
	if opts.Expires != "" {
		d, err := policy.ParseDuration(opts.Expires)
		if err != nil || d <= 0 {
			return Usagef("--expires: invalid duration %q: want a positive duration such as 720h or 30d", opts.Expires)
		}
		t := opts.Now().Add(d).UTC()
		expiresAt = &t
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	a, err := resolveAgent(ctx, st, "--agent", opts.Agent)
	if err != nil {
		return err
	}
	secret, hash, prefix, err := apikey.Generate()
	if err != nil {
		return err
	}
	k, err := st.CreateKey(ctx, a.ID, hash, prefix, expiresAt)
	if err != nil {
		return fmt.Errorf("create key for %q: %w", a.Name, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, createdKey{APIKey: k, AgentName: a.Name, Key: secret})
	}
	if err := printKV(opts.IO.Out,
		[2]string{"Key ID", k.ID},
		[2]string{"Agent", a.Name},
		[2]string{"Expires", formatTimePtr(k.ExpiresAt)},
		[2]string{"Key", secret},
	); err != nil {
		return err
	}
	fmt.Fprintln(opts.IO.ErrOut, "Store this key now: it is not shown again.")
	return nil
}

type agentKeyListOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (agentStore, error)
	Agent  string
	Output string
}

func newAgentKeyListCmd(f *Factory) *cobra.Command {
	opts := &agentKeyListOptions{IO: f.IO, Store: agentStoreFunc(f)}
	cmd := &cobra.Command{
		Use:     "list [--agent NAME|ID]",
		Aliases: []string{"ls"},
		Short:   "List API keys (prefixes only): an agent's, or every agent's",
		Example: `  caracal agent key list
  caracal agent key list --agent research-bot`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgentKeyList(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Agent, "agent", "", "only this agent's keys (name or ID); default every agent's")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAgentKeyList(ctx context.Context, opts *agentKeyListOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	var agents []policy.Agent
	if opts.Agent != "" {
		a, err := resolveAgent(ctx, st, "--agent", opts.Agent)
		if err != nil {
			return err
		}
		agents = []policy.Agent{a}
	} else if agents, err = st.ListAgents(ctx); err != nil {
		return fmt.Errorf("list agents: %w", err)
	}
	keys, names, err := keysOf(ctx, st, agents)
	if err != nil {
		return err
	}
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, []string{k.ID, names[k.AgentID], k.Prefix, formatTime(k.CreatedAt), formatTimePtr(k.ExpiresAt), formatTimePtr(k.RevokedAt)})
	}
	return printRows(opts.IO.Out, opts.Output, keys, []string{"id", "agent", "prefix", "created", "expires", "revoked"}, rows)
}

// keysOf lists the keys of every agent given, agent by agent, and the
// agents' names by ID.
func keysOf(ctx context.Context, st ledger.Agents, agents []policy.Agent) ([]policy.APIKey, map[string]string, error) {
	keys := []policy.APIKey{}
	names := make(map[string]string, len(agents))
	for _, a := range agents {
		names[a.ID] = a.Name
		ks, err := st.ListKeys(ctx, a.ID)
		if err != nil {
			return nil, nil, fmt.Errorf("list keys of %q: %w", a.Name, err)
		}
		keys = append(keys, ks...)
	}
	return keys, names, nil
}

// minKeyPrefix is the shortest prefix `agent key revoke` matches, so that
// a stray character cannot revoke a key.
const minKeyPrefix = 4

// findKey resolves a key reference: a key ID, or a unique prefix of a key
// ID or of the key's own prefix (crk_…) as lists show it. An ambiguous
// prefix is a usage error listing the candidates.
func findKey(ctx context.Context, st ledger.Agents, ref string) (policy.APIKey, error) {
	agents, err := st.ListAgents(ctx)
	if err != nil {
		return policy.APIKey{}, fmt.Errorf("list agents: %w", err)
	}
	keys, names, err := keysOf(ctx, st, agents)
	if err != nil {
		return policy.APIKey{}, err
	}
	var found []policy.APIKey
	for _, k := range keys {
		if k.ID == ref {
			return k, nil
		}
		if len(ref) >= minKeyPrefix && (strings.HasPrefix(k.ID, ref) || strings.HasPrefix(k.Prefix, ref)) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		if len(ref) < minKeyPrefix {
			return policy.APIKey{}, Usagef("key %q not found: give the key ID or at least %d characters of it", ref, minKeyPrefix)
		}
		return policy.APIKey{}, fmt.Errorf("key %q not found", ref)
	case 1:
		return found[0], nil
	}
	cands := make([]string, len(found))
	for i, k := range found {
		state := ""
		if k.RevokedAt != nil {
			state = ", revoked"
		}
		cands[i] = fmt.Sprintf("%s (%s…, agent %s%s)", k.ID, k.Prefix, names[k.AgentID], state)
	}
	return policy.APIKey{}, Usagef("key prefix %q is ambiguous: it matches %s; give more characters", ref, strings.Join(cands, ", "))
}

type agentKeyRevokeOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (agentStore, error)
	KeyID  string
	Output string
}

func newAgentKeyRevokeCmd(f *Factory) *cobra.Command {
	opts := &agentKeyRevokeOptions{IO: f.IO, Store: agentStoreFunc(f)}
	cmd := &cobra.Command{
		Use:   "revoke KEY_ID|PREFIX",
		Short: "Revoke an API key; requests carrying it are refused from now on",
		Long: `Revoke takes the key's ID, or a unique prefix (at least 4 characters) of
its ID or of its crk_ prefix as agent key list shows them.`,
		Example: `  caracal agent key revoke 0b9c3c5e-6a3f-4d0e-9c1e-2f1f4e6f7a10
  caracal agent key revoke 0b9c3c5e`,
		Args: exactArgs(1, "KEY_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.KeyID = args[0]
			return runAgentKeyRevoke(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAgentKeyRevoke(ctx context.Context, opts *agentKeyRevokeOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	k, err := findKey(ctx, st, opts.KeyID)
	if err != nil {
		return err
	}
	opts.KeyID = k.ID
	k, err = st.RevokeKey(ctx, k.ID)
	if err != nil {
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			return fmt.Errorf("key %q not found", opts.KeyID)
		case errors.Is(err, ledger.ErrConflict):
			return fmt.Errorf("key %q is already revoked", opts.KeyID)
		}
		return fmt.Errorf("revoke key %q: %w", opts.KeyID, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, k)
	}
	fmt.Fprintf(opts.IO.Out, "Key %s (%s…) revoked.\n", k.ID, k.Prefix)
	return nil
}
