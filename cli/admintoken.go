package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func newAdminCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage access to the admin API of caracal serve",
	}
	tok := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke admin API tokens",
		Long: `An admin token (cra_…) authenticates an operator to the admin API of
caracal serve. A read-only token may only read (GET). A token is shown once,
when created; only its SHA-256 hash is stored. A revoked token is refused
on its next request.`,
	}
	tok.AddCommand(newAdminTokenCreateCmd(f), newAdminTokenListCmd(f), newAdminTokenRevokeCmd(f))
	cmd.AddCommand(tok)
	return cmd
}

func adminTokenStore(f *Factory) func(context.Context) (ledger.AdminTokens, error) {
	return func(ctx context.Context) (ledger.AdminTokens, error) { return f.Store(ctx) }
}

// createdAdminToken is `admin token create`'s JSON. Token is the secret,
// shown once.
type createdAdminToken struct {
	ledger.AdminToken
	Token string `json:"token"`
}

type adminTokenCreateOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (ledger.AdminTokens, error)
	Name     string
	ReadOnly bool
	Output   string
}

func newAdminTokenCreateCmd(f *Factory) *cobra.Command {
	opts := &adminTokenCreateOptions{IO: f.IO, Store: adminTokenStore(f)}
	cmd := &cobra.Command{
		Use:   "create --name NAME [--read-only]",
		Short: "Create an admin API token (shown once)",
		Example: `  caracal admin token create --name ops
  caracal admin token create --name dashboard --read-only -o json | jq -r .token`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAdminTokenCreate(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Name, "name", "", "unique name telling the token apart (who or what holds it)")
	cmd.Flags().BoolVar(&opts.ReadOnly, "read-only", false, "the token may only read (GET)")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAdminTokenCreate(ctx context.Context, opts *adminTokenCreateOptions) error {
	name := strings.TrimSpace(opts.Name)
	if name == "" {
		return Usagef("--name: required")
	}
	if err := policy.ValidateText(name); err != nil {
		return Usagef("--name: %w", err)
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	secret, hash, prefix, err := apikey.GenerateWith(apikey.AdminScheme)
	if err != nil {
		return err
	}
	t, err := st.CreateAdminToken(ctx, name, hash, prefix, opts.ReadOnly)
	if err != nil {
		if errors.Is(err, ledger.ErrConflict) {
			return fmt.Errorf("--name: admin token %q already exists", name)
		}
		return fmt.Errorf("create admin token %q: %w", name, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, createdAdminToken{AdminToken: t, Token: secret})
	}
	access := "read and write"
	if t.ReadOnly {
		access = "read-only"
	}
	if err := printKV(opts.IO.Out,
		[2]string{"Token ID", t.ID},
		[2]string{"Name", t.Name},
		[2]string{"Access", access},
		[2]string{"Token", secret},
	); err != nil {
		return err
	}
	fmt.Fprintln(opts.IO.ErrOut, "Store this token now: it is not shown again.")
	return nil
}

type adminTokenListOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.AdminTokens, error)
	Output string
}

func newAdminTokenListCmd(f *Factory) *cobra.Command {
	opts := &adminTokenListOptions{IO: f.IO, Store: adminTokenStore(f)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List admin API tokens (prefixes only), revoked ones included",
		Example: `  caracal admin token list -o json`,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runAdminTokenList(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAdminTokenList(ctx context.Context, opts *adminTokenListOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	ts, err := st.ListAdminTokens(ctx)
	if err != nil {
		return fmt.Errorf("list admin tokens: %w", err)
	}
	ts = nonNil(ts)
	rows := make([][]string, 0, len(ts))
	for _, t := range ts {
		rows = append(rows, []string{t.ID, t.Name, t.Prefix, fmt.Sprint(t.ReadOnly), formatTime(t.CreatedAt), formatTimePtr(t.RevokedAt)})
	}
	return printRows(opts.IO.Out, opts.Output, ts, []string{"id", "name", "prefix", "read_only", "created", "revoked"}, rows)
}

type adminTokenRevokeOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.AdminTokens, error)
	Ref    string
	Output string
}

func newAdminTokenRevokeCmd(f *Factory) *cobra.Command {
	opts := &adminTokenRevokeOptions{IO: f.IO, Store: adminTokenStore(f)}
	cmd := &cobra.Command{
		Use:     "revoke ID|NAME",
		Short:   "Revoke an admin API token; its next request is refused",
		Example: `  caracal admin token revoke dashboard`,
		Args:    exactArgs(1, "ID|NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ref = args[0]
			return runAdminTokenRevoke(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runAdminTokenRevoke(ctx context.Context, opts *adminTokenRevokeOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	t, err := st.RevokeAdminToken(ctx, opts.Ref)
	if err != nil {
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			return fmt.Errorf("admin token %q not found", opts.Ref)
		case errors.Is(err, ledger.ErrConflict):
			return fmt.Errorf("admin token %q is already revoked", opts.Ref)
		}
		return fmt.Errorf("revoke admin token %q: %w", opts.Ref, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, t)
	}
	fmt.Fprintf(opts.IO.Out, "Admin token %s (%s, %s…) revoked.\n", t.Name, t.ID, t.Prefix)
	return nil
}
