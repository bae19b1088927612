package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Demo names quickstart creates once and reuses on every later run.
const (
	demoAgentName  = "demo"
	demoAgentOwner = "quickstart"
	demoLimit      = "1.00"
)

// demoPricebook prices the demo's resources; rules the operator already
// has for the same patterns are left alone.
const demoPricebook = `prices:
  - resource: "mcp:demo/echo"
    per_call: "0.001"
  - resource: "mcp:demo/search"
    per_call: "0.01"
    per_unit: {path: "count", price: "0.002"}
  - resource: "mcp:demo/deep_research"
    per_call: "2.00"
  - resource: "mcp:demo/*"
    per_call: "0.05"
  - resource: "llm:openai/gpt-4o*"
    input_per_million: "2.50"
    output_per_million: "10.00"
    cached_input_per_million: "1.25"
`

// quickstartStore is what quickstart needs of the store.
type quickstartStore interface {
	ledger.Agents
	ledger.Policies
	ledger.Pricebook
}

// quickstartEnv is what the demo step receives: an initialised home, the
// demo agent with its budget, and the demo prices.
type quickstartEnv struct {
	IO      *IOStreams
	Factory *Factory
	Store   quickstartStore
	Agent   policy.Agent
	Policy  policy.Policy
	Prices  []policy.PriceRule
}

type quickstartOptions struct {
	IO      *IOStreams
	Factory *Factory
	// Demo runs after the setup; runQuickstartDemo unless a test replaces it.
	Demo func(ctx context.Context, env *quickstartEnv) error
}

func newQuickstartCmd(f *Factory) *cobra.Command {
	opts := &quickstartOptions{IO: f.IO, Factory: f, Demo: runQuickstartDemo}
	return &cobra.Command{
		Use:   "quickstart",
		Short: "Initialise Caracal and set up a demo agent with a $1.00 daily budget",
		Long: `Quickstart initialises the home (like caracal init), registers the agent
"demo" with a budget of 1.00 USD a day, imports a demo pricebook and prints
them. Running it again reuses what the first run created.`,
		Example: `  caracal quickstart
  caracal quickstart --home /tmp/caracal-demo`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runQuickstart(cmd.Context(), opts) },
	}
}

func runQuickstart(ctx context.Context, opts *quickstartOptions) error {
	f, w := opts.Factory, opts.IO.Out
	ir, err := runInit(ctx, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Caracal home %s (%s database, schema version %d).\n", ir.Home, ir.Backend, ir.SchemaVersion)
	st, err := useStore[quickstartStore](ctx, f)
	if err != nil {
		return err
	}
	env := &quickstartEnv{IO: opts.IO, Factory: f, Store: st}

	a, err := st.GetAgent(ctx, demoAgentName)
	switch {
	case err == nil:
		fmt.Fprintf(w, "Reusing agent %q.\n", a.Name)
	case errors.Is(err, ledger.ErrNotFound):
		if a, err = st.CreateAgent(ctx, ledger.NewAgent{Name: demoAgentName, Owner: demoAgentOwner,
			Metadata: map[string]string{"created_by": "caracal quickstart"}}); err != nil {
			return fmt.Errorf("create demo agent: %w", err)
		}
		fmt.Fprintf(w, "Registered agent %q.\n", a.Name)
	default:
		return fmt.Errorf("find demo agent: %w", err)
	}
	env.Agent = a

	pols, err := st.ListPolicies(ctx, a.ID, false)
	if err != nil {
		return fmt.Errorf("list demo policies: %w", err)
	}
	if len(pols) > 0 {
		env.Policy = pols[0]
		fmt.Fprintf(w, "Reusing its budget %s %s (%s).\n", env.Policy.Limit, env.Policy.Currency, env.Policy.Window)
	} else {
		env.Policy, err = st.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse(demoLimit),
			Currency: money.DefaultCurrency, Window: policy.WindowDaily, WindowType: policy.WindowCalendar, Timezone: "UTC"})
		if err != nil {
			return fmt.Errorf("create demo budget: %w", err)
		}
		fmt.Fprintf(w, "Gave it a budget of %s %s a day.\n", env.Policy.Limit, env.Policy.Currency)
	}

	rules, err := policy.ParsePricebook([]byte(demoPricebook), policy.FormatYAML)
	if err != nil {
		return fmt.Errorf("demo pricebook: %w", err)
	}
	existing, err := st.ListPrices(ctx)
	if err != nil {
		return fmt.Errorf("list prices: %w", err)
	}
	have := map[string]bool{}
	for _, r := range existing {
		have[r.Resource] = true
	}
	var missing []policy.PriceRule
	for _, r := range rules {
		if !have[r.Resource] {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		if err := st.ImportPrices(ctx, missing); err != nil {
			return fmt.Errorf("import demo prices: %w", err)
		}
	}
	fmt.Fprintf(w, "Demo pricebook: %d rules imported, %d already present.\n", len(missing), len(rules)-len(missing))
	if env.Prices, err = st.ListPrices(ctx); err != nil {
		return fmt.Errorf("list prices: %w", err)
	}

	fmt.Fprintln(w, "\nAgent:")
	if err := printAgent(w, env.Agent, parentLabel(ctx, st, env.Agent)); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nBudget:")
	if err := printPolicyTable(w, []policy.Policy{env.Policy}, map[string]string{a.ID: a.Name}); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nPricebook:")
	if err := printRows(w, FormatTable, nil, []string{"resource", "currency", "per_call", "input/M", "output/M", "per_unit"}, priceTableRows(env.Prices)); err != nil {
		return err
	}
	if opts.Demo != nil {
		if err := opts.Demo(ctx, env); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nNext: caracal agent key create --agent %s, then put caracal mcp --agent %s in front of an MCP server.\n", a.Name, a.Name)
	return nil
}

func priceTableRows(rules []policy.PriceRule) [][]string {
	rows := make([][]string, 0, len(rules))
	for _, r := range rules {
		unit := "-"
		if r.PerUnit != nil {
			unit = r.PerUnit.Price.String() + " × " + r.PerUnit.Path
		}
		rows = append(rows, []string{r.Resource, r.Currency, r.PerCall.String(), r.InputPerMillion.String(), r.OutputPerMillion.String(), unit})
	}
	return rows
}

// runQuickstartDemo is the demo that runs once the home, the demo agent and
// the prices exist.
func runQuickstartDemo(ctx context.Context, env *quickstartEnv) error {
	return runPipelineDemo(ctx, env)
}

// demoCalls are the calls the pipeline demo meters: what a small research
// task might spend on tools.
var demoCalls = []struct {
	resource string
	args     string
}{
	{"mcp:demo/echo", `{"text":"hello"}`},
	{"mcp:demo/search", `{"query":"caracal","count":5}`},
	{"mcp:demo/echo", `{"text":"again"}`},
	{"mcp:demo/summarise", `{"url":"https://example.com"}`},
	{"mcp:demo/search", `{"query":"budgets","count":20}`},
	{"mcp:demo/deep_research", `{"topic":"everything"}`},
}

// runPipelineDemo meters a few calls through the enforcement pipeline with
// an in-process relay standing in for a tool server, then prints what the
// ledger recorded for the demo agent.
func runPipelineDemo(ctx context.Context, env *quickstartEnv) error {
	cfg, err := env.Factory.Config()
	if err != nil {
		return err
	}
	st, err := env.Factory.Store(ctx)
	if err != nil {
		return err
	}
	eng := interpose.New(interpose.Options{Store: st, DefaultPrice: cfg.Pricing.Default, Currency: cfg.Pricing.Currency,
		Strict: cfg.Pricing.Strict, Now: env.Factory.now, Logger: slog.New(slog.DiscardHandler)})
	w := env.IO.Out
	fmt.Fprintln(w, "\nMetered calls (relayed in-process):")
	t := newTable(w, "resource", "decision", "price", "remaining")
	for _, c := range demoCalls {
		relay := func(context.Context) (interpose.Result, error) { return interpose.Result{}, nil }
		d, err := eng.Do(ctx, interpose.Call{AgentID: env.Agent.ID, Resource: c.resource, Operation: "tools/call",
			Upstream: "demo", Arguments: []byte(c.args)}, relay)
		verdict := "allowed"
		switch {
		case errors.Is(err, interpose.ErrDenied):
			verdict = "refused: " + string(d.Code)
		case err != nil:
			return fmt.Errorf("demo call %s: %w", c.resource, err)
		}
		t.row(c.resource, verdict, d.Price.String()+" "+d.Currency, remainingLabel(d))
	}
	if err := t.flush(); err != nil {
		return err
	}
	rows, err := st.Summary(ctx, ledger.EventFilter{AgentIDs: []string{env.Agent.ID}}, ledger.ByResource)
	if err != nil {
		return fmt.Errorf("summarise the demo ledger: %w", err)
	}
	fmt.Fprintf(w, "\nLedger of agent %s (caracal ledger summary --agent %s):\n", env.Agent.Name, env.Agent.Name)
	cells := make([][]string, 0, len(rows))
	for _, r := range rows {
		cells = append(cells, []string{r.Key, fmt.Sprint(r.Events), r.Charged.String(), fmt.Sprint(r.Denied), r.Currency})
	}
	return printRows(w, FormatTable, nil, []string{"resource", "events", "charged", "denied", "currency"}, cells)
}

// remainingLabel is the least remaining budget on the chain after d.
func remainingLabel(d policy.Decision) string {
	if len(d.Remaining) == 0 {
		return "-"
	}
	least := d.Remaining[0]
	for _, r := range d.Remaining[1:] {
		if r.Remaining < least.Remaining {
			least = r
		}
	}
	return least.Remaining.String() + " " + least.Currency
}
