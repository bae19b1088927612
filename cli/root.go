// Package cli is the caracal command line: cobra commands and viper
// configuration. Commands parse, call a package, and print; they hold no
// business logic.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	_ "time/tzdata" // policy time zones must resolve on hosts without a zoneinfo database

	"github.com/spf13/cobra"
)

// IOStreams are a command's standard streams, injected so tests can pass buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// Terminal reports whether Out is a terminal (progress bars, colour).
	Terminal bool
}

// UsageError is a usage or configuration error; the process exits 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, a ...any) error { return &UsageError{Err: fmt.Errorf(format, a...)} }

// SilentExit carries an exit code without printing anything more, for
// commands such as `merkle verify` that already printed their verdict.
type SilentExit struct{ Code int }

func (e *SilentExit) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// NewRootCmd builds the caracal command tree.
func NewRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "caracal",
		Short: "Meter and enforce spending budgets for AI agents",
		Long: `Caracal sits between AI agents and what they spend money on: MCP tool
servers (caracal mcp) and LLM APIs (caracal proxy). It prices every call,
checks every budget of the agent and its ancestors before relaying, and
records each decision in a tamper-evident ledger.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	f.bindGlobalFlags(root)

	root.AddCommand(
		newInitCmd(f),
		newQuickstartCmd(f),
		newVersionCmd(f),
		newAgentCmd(f),
		newPolicyCmd(f),
		newBudgetCmd(f),
		newDelegationCmd(f),
		newPricebookCmd(f),
		newLedgerCmd(f),
		newMerkleCmd(f),
		newKeysCmd(f),
		newDBCmd(f),
		newServeCmd(f),
		newAdminCmd(f),
		newMCPCmd(f),
		newProxyCmd(f),
		newHealthcheckCmd(f),
	)
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group (a command with
// subcommands and no action of its own) fail with a usage error on an
// unknown subcommand, where cobra would print help and exit 0.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		refuseUnknownSubcommands(c)
	}
	if cmd.HasParent() && cmd.HasSubCommands() && !cmd.Runnable() {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return Usagef("unknown command %q for %q%s", args[0], c.CommandPath(), didYouMean(c, args[0]))
			}
			return c.Help()
		}
	}
}

// didYouMean is cobra's suggestion text for a mistyped subcommand of c
// (the same text cobra prints for the root command), or "".
func didYouMean(c *cobra.Command, typed string) string {
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	sugg := c.SuggestionsFor(typed)
	if len(sugg) == 0 {
		return ""
	}
	return "\n\nDid you mean this?\n\t" + strings.Join(sugg, "\n\t") + "\n"
}

// Main runs the CLI with the process's streams and returns the exit code.
func Main(ctx context.Context, args []string) int {
	f := NewFactory(&IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, Terminal: isTerminal(os.Stdout)})
	return Execute(ctx, f, args)
}

// Execute runs one command line against f, closes f and returns the exit
// code, as a process would.
func Execute(ctx context.Context, f *Factory, args []string) int {
	defer f.Close()
	root := NewRootCmd(f)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return ExitCode(f.IO.ErrOut, usageFromCobra(err))
}

// ExitCode prints err as `caracal: …` on w and returns the exit code:
// 0 for nil, 2 for usage and configuration errors, 1 otherwise.
func ExitCode(w io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var silent *SilentExit
	if errors.As(err, &silent) {
		return silent.Code
	}
	fmt.Fprintf(w, "caracal: %v%s\n", err, hint(err))
	var usage *UsageError
	if errors.As(err, &usage) {
		return 2
	}
	return 1
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// usageFromCobra marks cobra's own argument errors (unknown command, wrong
// argument count, missing required flag) as usage errors.
func usageFromCobra(err error) error {
	if err == nil {
		return nil
	}
	var usage *UsageError
	if errors.As(err, &usage) {
		return err
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "required flag", "unknown flag", "unknown shorthand flag", "invalid argument"} {
		if strings.HasPrefix(msg, p) {
			return &UsageError{Err: err}
		}
	}
	return err
}
