package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func pricebookStoreFunc(f *Factory) func(context.Context) (ledger.Pricebook, error) {
	return func(ctx context.Context) (ledger.Pricebook, error) { return f.Store(ctx) }
}

func newPricebookCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pricebook",
		Short: "Set and inspect the prices of resources",
		Long: `The pricebook holds operator-owned price rules keyed by resource pattern
(mcp:<server>/<tool>, llm:<provider>/<model>, http:<upstream>/<route>, with
* globs). The most specific matching pattern wins. A rule may price per call,
per million input, output, cached-read, cache-write and reasoning tokens,
and per unit of a quantity read from the call's arguments.`,
	}
	cmd.AddCommand(
		newPricebookSetCmd(f),
		newPricebookGetCmd(f),
		newPricebookListCmd(f),
		newPricebookDeleteCmd(f),
		newPricebookImportCmd(f),
		newPricebookExportCmd(f),
	)
	return cmd
}

// priceFlags maps each rule-kind flag to the rule field it sets.
var priceFlags = []struct {
	name, usage string
	field       func(*policy.PriceRule) *money.Amount
}{
	{"per-call", "price of one call", func(r *policy.PriceRule) *money.Amount { return &r.PerCall }},
	{"input-per-million", "price per million input tokens", func(r *policy.PriceRule) *money.Amount { return &r.InputPerMillion }},
	{"output-per-million", "price per million output tokens", func(r *policy.PriceRule) *money.Amount { return &r.OutputPerMillion }},
	{"cached-input-per-million", "price per million cached-read input tokens", func(r *policy.PriceRule) *money.Amount { return &r.CachedInputPerMillion }},
	{"cache-write-per-million", "price per million cache-write tokens", func(r *policy.PriceRule) *money.Amount { return &r.CacheWritePerMillion }},
	{"reasoning-per-million", "price per million reasoning tokens", func(r *policy.PriceRule) *money.Amount { return &r.ReasoningPerMillion }},
}

type pricebookSetOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (ledger.Pricebook, error)
	Resource string
	// Prices holds the value of each rule-kind flag that was given, by flag name.
	Prices       map[string]string
	UnitPath     string
	UnitPrice    string
	Currency     string
	ChargeErrors string
	ChargeRounds bool
	Output       string
}

func newPricebookSetCmd(f *Factory) *cobra.Command {
	opts := &pricebookSetOptions{IO: f.IO, Store: pricebookStoreFunc(f)}
	vals := make([]string, len(priceFlags))
	cmd := &cobra.Command{
		Use:   "set RESOURCE [price flags]",
		Short: "Create or replace the price rule for a resource pattern",
		Example: `  caracal pricebook set 'mcp:fs/read_file' --per-call 0.001
  caracal pricebook set 'mcp:search/*' --per-call 0.01 --per-unit-path count --per-unit-price 0.002
  caracal pricebook set 'llm:openai/gpt-4o*' --input-per-million 2.50 --output-per-million 10 \
    --cached-input-per-million 1.25`,
		Args: exactArgs(1, "RESOURCE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Resource = args[0]
			opts.Prices = map[string]string{}
			for i, pf := range priceFlags {
				if cmd.Flags().Changed(pf.name) {
					opts.Prices[pf.name] = vals[i]
				}
			}
			return runPricebookSet(cmd.Context(), opts)
		},
	}
	for i, pf := range priceFlags {
		cmd.Flags().StringVar(&vals[i], pf.name, "", pf.usage)
	}
	cmd.Flags().StringVar(&opts.UnitPath, "per-unit-path", "", "gjson path of a quantity in the call's arguments, such as count")
	cmd.Flags().StringVar(&opts.UnitPrice, "per-unit-price", "", "price per unit of the --per-unit-path quantity")
	cmd.Flags().StringVar(&opts.Currency, "currency", money.DefaultCurrency, "three-letter currency code")
	cmd.Flags().StringVar(&opts.ChargeErrors, "charge-errors", "", "charge tool results with isError: true (true or false; default true)")
	cmd.Flags().BoolVar(&opts.ChargeRounds, "charge-rounds", false, "charge every round of a multi-round MCP tool call (input_required) as a call of its own")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPricebookSet(ctx context.Context, opts *pricebookSetOptions) error {
	res := strings.TrimSpace(opts.Resource)
	if res == "" || res != opts.Resource || strings.ContainsAny(res, " \t\n") {
		return Usagef("RESOURCE: invalid pattern %q: want a resource pattern without spaces such as 'mcp:fs/*'", opts.Resource)
	}
	cur := opts.Currency
	if cur == "" {
		cur = money.DefaultCurrency
	}
	cur, err := parseCurrency("--currency", cur)
	if err != nil {
		return err
	}
	r := policy.PriceRule{Resource: res, Currency: cur}
	for _, pf := range priceFlags {
		v, ok := opts.Prices[pf.name]
		if !ok {
			continue
		}
		a, err := parseAmount("--"+pf.name, v)
		if err != nil {
			return err
		}
		*pf.field(&r) = a
	}
	switch {
	case opts.UnitPath != "" && opts.UnitPrice == "":
		return Usagef("--per-unit-price: required with --per-unit-path")
	case opts.UnitPath == "" && opts.UnitPrice != "":
		return Usagef("--per-unit-path: required with --per-unit-price")
	case opts.UnitPath != "":
		if err := policy.ValidateText(opts.UnitPath); err != nil {
			return Usagef("--per-unit-path: %w", err)
		}
		a, err := parseAmount("--per-unit-price", opts.UnitPrice)
		if err != nil {
			return err
		}
		r.PerUnit = &policy.PerUnit{Path: opts.UnitPath, Price: a}
	}
	if len(opts.Prices) == 0 && r.PerUnit == nil {
		return Usagef("pricebook set: give at least one price: --per-call, --input-per-million, --output-per-million, --cached-input-per-million, --cache-write-per-million, --reasoning-per-million or --per-unit-path with --per-unit-price")
	}
	if opts.ChargeErrors != "" {
		b, err := strconv.ParseBool(opts.ChargeErrors)
		if err != nil {
			return Usagef("--charge-errors: invalid boolean %q: want true or false", opts.ChargeErrors)
		}
		r.ChargeErrors = &b
	}
	r.ChargeRounds = opts.ChargeRounds
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	saved, err := st.SetPrice(ctx, r)
	if err != nil {
		return fmt.Errorf("set price of %q: %w", res, err)
	}
	return printPriceRule(opts.IO.Out, opts.Output, saved, "")
}

func printPriceRule(w io.Writer, format string, r policy.PriceRule, queried string) error {
	if format == FormatJSON {
		return printJSON(w, r)
	}
	pairs := [][2]string{{"Resource", r.Resource}}
	if queried != "" && queried != r.Resource {
		pairs = append(pairs, [2]string{"Matched", queried})
	}
	pairs = append(pairs, [2]string{"Currency", r.Currency})
	for _, c := range priceColumns(r) {
		pairs = append(pairs, [2]string{c[0], c[1]})
	}
	ce := "true"
	if r.ChargeErrors != nil {
		ce = strconv.FormatBool(*r.ChargeErrors)
	}
	pairs = append(pairs, [2]string{"Charge errors", ce}, [2]string{"Updated", formatTime(r.UpdatedAt)})
	return printKV(w, pairs...)
}

// priceColumns lists a rule's non-zero prices for human output.
func priceColumns(r policy.PriceRule) [][2]string {
	var out [][2]string
	add := func(label string, a money.Amount) {
		if a != 0 {
			out = append(out, [2]string{label, a.String()})
		}
	}
	add("Per call", r.PerCall)
	add("Input per million", r.InputPerMillion)
	add("Output per million", r.OutputPerMillion)
	add("Cached input per million", r.CachedInputPerMillion)
	add("Cache write per million", r.CacheWritePerMillion)
	add("Reasoning per million", r.ReasoningPerMillion)
	if r.PerUnit != nil {
		out = append(out, [2]string{"Per unit", r.PerUnit.Price.String() + " × " + r.PerUnit.Path})
	}
	if len(out) == 0 {
		out = append(out, [2]string{"Per call", "0.00"})
	}
	return out
}

type pricebookGetOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (ledger.Pricebook, error)
	Resource string
	Output   string
}

func newPricebookGetCmd(f *Factory) *cobra.Command {
	opts := &pricebookGetOptions{IO: f.IO, Store: pricebookStoreFunc(f)}
	cmd := &cobra.Command{
		Use:   "get RESOURCE",
		Short: "Show the rule that prices a resource (exact pattern, else the most specific match)",
		Example: `  caracal pricebook get 'mcp:search/*'
  caracal pricebook get mcp:search/web_search -o json`,
		Args: exactArgs(1, "RESOURCE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Resource = args[0]
			return runPricebookGet(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPricebookGet(ctx context.Context, opts *pricebookGetOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	r, err := st.GetPrice(ctx, opts.Resource)
	if err == nil {
		return printPriceRule(opts.IO.Out, opts.Output, r, "")
	}
	if !errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("read price of %q: %w", opts.Resource, err)
	}
	rules, err := st.ListPrices(ctx)
	if err != nil {
		return fmt.Errorf("list prices: %w", err)
	}
	r, ok := policy.MatchRule(rules, opts.Resource)
	if !ok {
		return fmt.Errorf("no price rule matches %q", opts.Resource)
	}
	return printPriceRule(opts.IO.Out, opts.Output, r, opts.Resource)
}

type pricebookListOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Pricebook, error)
	Output string
}

func newPricebookListCmd(f *Factory) *cobra.Command {
	opts := &pricebookListOptions{IO: f.IO, Store: pricebookStoreFunc(f)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List every price rule",
		Example: `  caracal pricebook list
  caracal pricebook list -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPricebookList(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPricebookList(ctx context.Context, opts *pricebookListOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	rules, err := st.ListPrices(ctx)
	if err != nil {
		return fmt.Errorf("list prices: %w", err)
	}
	rules = nonNil(rules)
	rows := make([][]string, 0, len(rules))
	for _, r := range rules {
		unit := "-"
		if r.PerUnit != nil {
			unit = r.PerUnit.Price.String() + " × " + r.PerUnit.Path
		}
		rows = append(rows, []string{r.Resource, r.Currency, r.PerCall.String(), r.InputPerMillion.String(),
			r.OutputPerMillion.String(), r.CachedInputPerMillion.String(), r.CacheWritePerMillion.String(),
			r.ReasoningPerMillion.String(), unit})
	}
	return printRows(opts.IO.Out, opts.Output, rules,
		[]string{"resource", "currency", "per_call", "input/M", "output/M", "cached/M", "cache_write/M", "reasoning/M", "per_unit"}, rows)
}

type pricebookDeleteOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (ledger.Pricebook, error)
	Resource string
	Output   string
}

func newPricebookDeleteCmd(f *Factory) *cobra.Command {
	opts := &pricebookDeleteOptions{IO: f.IO, Store: pricebookStoreFunc(f)}
	cmd := &cobra.Command{
		Use:     "delete RESOURCE",
		Aliases: []string{"rm"},
		Short:   "Delete the rule for an exact resource pattern",
		Example: `  caracal pricebook delete 'mcp:search/*'`,
		Args:    exactArgs(1, "RESOURCE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Resource = args[0]
			return runPricebookDelete(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPricebookDelete(ctx context.Context, opts *pricebookDeleteOptions) error {
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	if err := st.DeletePrice(ctx, opts.Resource); err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("no price rule for %q", opts.Resource)
		}
		return fmt.Errorf("delete price of %q: %w", opts.Resource, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, struct {
			Deleted string `json:"deleted"`
		}{opts.Resource})
	}
	fmt.Fprintf(opts.IO.Out, "Price rule %s deleted.\n", opts.Resource)
	return nil
}

type pricebookImportOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Pricebook, error)
	File   string
	Output string
}

// pricebookImported is `pricebook import -o json`: the file, how many
// rules it set and the rules as stored.
type pricebookImported struct {
	File     string             `json:"file"`
	Imported int                `json:"imported"`
	Rules    []policy.PriceRule `json:"rules"`
}

func newPricebookImportCmd(f *Factory) *cobra.Command {
	opts := &pricebookImportOptions{IO: f.IO, Store: pricebookStoreFunc(f)}
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Set every rule of a YAML or JSON pricebook file, all or nothing",
		Long: `Import reads a pricebook file (YAML or JSON, see examples/pricebook.yaml) and
sets every rule in one transaction: if any entry is invalid nothing is
written and the error names the entry and the field. Rules not in the file
are left as they are. FILE - reads standard input.`,
		Example: `  caracal pricebook import examples/pricebook.yaml
  caracal pricebook export > prices.yaml && caracal pricebook import prices.yaml`,
		Args: exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			return runPricebookImport(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runPricebookImport(ctx context.Context, opts *pricebookImportOptions) error {
	var (
		data []byte
		err  error
	)
	if opts.File == "-" {
		data, err = io.ReadAll(opts.IO.In)
	} else {
		data, err = os.ReadFile(opts.File)
	}
	if err != nil {
		return Usagef("pricebook import: %v", err)
	}
	format := ""
	if strings.EqualFold(filepath.Ext(opts.File), ".json") {
		format = policy.FormatJSON
	}
	rules, err := policy.ParsePricebook(data, format)
	if err != nil {
		return Usagef("%s: %v", opts.File, err)
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	if err := st.ImportPrices(ctx, rules); err != nil {
		return fmt.Errorf("import %s: %w", opts.File, err)
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, pricebookImported{File: opts.File, Imported: len(rules), Rules: nonNil(rules)})
	}
	fmt.Fprintf(opts.IO.Out, "Imported %s from %s.\n", plural(int64(len(rules)), "price rule"), opts.File)
	return nil
}

type pricebookExportOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Pricebook, error)
	Format string
}

func newPricebookExportCmd(f *Factory) *cobra.Command {
	opts := &pricebookExportOptions{IO: f.IO, Store: pricebookStoreFunc(f)}
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print the whole pricebook in the import file format",
		Example: `  caracal pricebook export > prices.yaml
  caracal pricebook export --format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPricebookExport(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Format, "format", "yaml", "yaml or json")
	return cmd
}

func runPricebookExport(ctx context.Context, opts *pricebookExportOptions) error {
	if opts.Format != "yaml" && opts.Format != "json" {
		return Usagef("--format: unknown format %q: want yaml or json", opts.Format)
	}
	st, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	rules, err := st.ListPrices(ctx)
	if err != nil {
		return fmt.Errorf("list prices: %w", err)
	}
	out, err := policy.MarshalPricebook(rules, opts.Format)
	if err != nil {
		return err
	}
	_, err = opts.IO.Out.Write(out)
	return err
}
