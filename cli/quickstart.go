package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/mcp"
	"github.com/caracal-dev/caracal/mcp/metering"
	"github.com/caracal-dev/caracal/policy"
)

// Demo names quickstart creates once and reuses on every later run.
const (
	demoAgentName  = "demo"
	demoAgentOwner = "quickstart"
	demoLimit      = "1.00"
	// demoServer is the example server's name in resources: mcp:weather/<tool>.
	demoServer = "weather"
)

// demoPricebook prices the example server's tools; rules the operator
// already has for the same patterns are left alone. The server declares
// lower prices of its own, but it is not marked trusted, and the pricebook
// would win anyway.
const demoPricebook = `prices:
  - resource: "mcp:weather/forecast"
    per_call: "0.10"
  - resource: "mcp:weather/history"
    per_call: "0.05"
    per_unit: {path: "days", price: "0.01"}
  - resource: "mcp:weather/ping"
    per_call: "0"
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
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Initialise Caracal and run the whole demo: a budgeted agent calling tools through the MCP proxy",
		Long: `Quickstart initialises the home (like caracal init), registers the agent
"demo" with a budget of 1.00 USD a day and prices the tools of an example
MCP server. It then runs that server behind caracal mcp and drives it with
an MCP client, making priced calls until the budget refuses one, and ends
with the ledger summary and a full Merkle verification of the ledger.

Running it again reuses the agent and the prices, and gives the agent a
fresh demo budget (the previous one is deactivated; its spending stays in
the ledger), so the demo plays out the same way every time.`,
		Example: `  caracal quickstart
  caracal quickstart --home /tmp/caracal-demo`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runQuickstart(cmd.Context(), opts) },
	}
	cmd.AddCommand(newExampleServerCmd(f))
	return cmd
}

func runQuickstart(ctx context.Context, opts *quickstartOptions) error {
	f, w := opts.Factory, opts.IO.Out
	ir, err := runInit(ctx, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Caracal home %s (%s database, schema version %d).\n", ir.Home, ir.Backend, ir.SchemaVersion)
	st, err := f.Store(ctx)
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

	// Every run gets a fresh budget, so the demo shows the same calls and
	// the same refusal each time instead of finding today's dollar spent.
	pols, err := st.ListPolicies(ctx, a.ID, false)
	if err != nil {
		return fmt.Errorf("list demo policies: %w", err)
	}
	for _, p := range pols {
		if _, err := st.DeactivatePolicy(ctx, p.ID); err != nil {
			return fmt.Errorf("deactivate the previous demo budget: %w", err)
		}
	}
	env.Policy, err = st.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse(demoLimit),
		Currency: money.DefaultCurrency, Window: policy.WindowDaily, WindowType: policy.WindowCalendar, Timezone: "UTC"})
	if err != nil {
		return fmt.Errorf("create demo budget: %w", err)
	}
	if len(pols) == 0 {
		fmt.Fprintf(w, "Gave it a budget of %s %s a day.\n", env.Policy.Limit, env.Policy.Currency)
	} else {
		fmt.Fprintf(w, "Gave it a fresh budget of %s %s a day; the previous demo budget is deactivated (its spending stays in the ledger).\n",
			env.Policy.Limit, env.Policy.Currency)
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
	fmt.Fprintf(w, "Demo pricebook: %s imported, %d already present.\n", plural(int64(len(missing)), "rule"), len(rules)-len(missing))
	all, err := st.ListPrices(ctx)
	if err != nil {
		return fmt.Errorf("list prices: %w", err)
	}
	for _, r := range all {
		if strings.HasPrefix(r.Resource, metering.Resource(demoServer, "")) {
			env.Prices = append(env.Prices, r)
		}
	}

	fmt.Fprintln(w, "\nAgent:")
	if err := printAgent(w, env.Agent, parentLabel(ctx, st, env.Agent)); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nBudget:")
	if err := printPolicyTable(w, []policy.Policy{env.Policy}, map[string]string{a.ID: a.Name}); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nPrices of the demo's tools:")
	if err := printRows(w, FormatTable, nil, []string{"resource", "currency", "per_call", "per_unit"}, priceTableRows(env.Prices)); err != nil {
		return err
	}
	if opts.Demo != nil {
		if err := opts.Demo(ctx, env); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nNext: caracal ledger query --agent %s, caracal merkle prove --seq 0, or put caracal mcp --agent %s\nin front of your own MCP server (examples/claude-desktop.json).\n", a.Name, a.Name)
	return nil
}

func priceTableRows(rules []policy.PriceRule) [][]string {
	rows := make([][]string, 0, len(rules))
	for _, r := range rules {
		unit := "-"
		if r.PerUnit != nil {
			unit = r.PerUnit.Price.String() + " × " + r.PerUnit.Path
		}
		rows = append(rows, []string{r.Resource, r.Currency, r.PerCall.String(), unit})
	}
	return rows
}

// demoTimeout bounds the demo's MCP session, so a proxy that never answers
// fails quickstart instead of hanging it.
const demoTimeout = 2 * time.Minute

// maxDemoCalls ends the demo if no call is refused, as happens when the
// operator has lowered the demo's prices.
const maxDemoCalls = 40

// demoCities are the cities the scripted client asks about, in turn.
var demoCities = []string{"Lisbon", "Nairobi", "Oslo", "Lima", "Osaka", "Quito", "Dakar", "Hanoi"}

// demoCall is the scripted client's n-th call (from 0): a free ping, then a
// forecast and two weeks of history for one city after another.
func demoCall(n int) (tool string, args map[string]any) {
	if n == 0 {
		return "ping", map[string]any{}
	}
	city := demoCities[(n-1)/2%len(demoCities)]
	if n%2 == 1 {
		return "forecast", map[string]any{"city": city}
	}
	return "history", map[string]any{"city": city, "days": 14}
}

// runQuickstartDemo is the demo that runs once the home, the demo agent and
// the prices exist: the example server behind a real `caracal mcp` process,
// a scripted MCP client calling it until the budget refuses a call, then
// the ledger summary and a full verification of the Merkle log.
func runQuickstartDemo(ctx context.Context, env *quickstartEnv) error {
	cfg, err := env.Factory.Config()
	if err != nil {
		return err
	}
	if cfg.MCP.Listen != "" {
		return Usagef("mcp.listen: quickstart talks to caracal mcp on stdio, but the configuration sets mcp.listen to %q; run quickstart with another --home", cfg.MCP.Listen)
	}
	st, err := env.Factory.Store(ctx)
	if err != nil {
		return err
	}
	// The proxy process charges calls on the wall clock, so the demo reads
	// the ledger on it too rather than on the factory's clock.
	start := time.Now()
	if err := runDemoSession(ctx, env, cfg, st); err != nil {
		return err
	}
	if err := printDemoLedger(ctx, env, st, start); err != nil {
		return err
	}
	return verifyDemoLedger(ctx, env, cfg.Home, st)
}

// runDemoSession starts `caracal mcp` in front of `caracal quickstart
// example-server` as child processes and drives it over stdio with the
// mcp-go client, as an agent host would.
func runDemoSession(ctx context.Context, env *quickstartEnv, cfg *Config, st ledger.Store) (err error) {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the caracal executable: %w", err)
	}
	args := []string{"mcp", "--home", cfg.Home, "--agent", env.Agent.ID, "--name", demoServer, "--log-level", "error",
		"--", self, "quickstart", "example-server"}
	// Given in the environment rather than as flags, so a database
	// password does not show in the process list.
	var childEnv []string
	if fl := env.Factory.Flags; fl.DatabaseURL != "" {
		childEnv = append(childEnv, "CARACAL_DATABASE_URL="+fl.DatabaseURL)
	}
	if fl := env.Factory.Flags; fl.ConfigFile != "" {
		childEnv = append(childEnv, "CARACAL_CONFIG="+fl.ConfigFile)
	}

	w := env.IO.Out
	fmt.Fprintf(w, "\nRunning the example MCP server behind the proxy, as an agent host would:\n  caracal mcp --agent %s --name %s -- caracal quickstart example-server\n",
		env.Agent.Name, demoServer)
	tr := transport.NewStdioWithOptions(self, childEnv, args, transport.WithCommandStderrWriter(env.IO.ErrOut))
	c := client.NewClient(tr)
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("start caracal mcp: %w", err)
	}
	defer func() {
		// Closing its stdin ends the proxy, which settles every call and
		// integrates the ledger before it exits.
		if cerr := c.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("stop caracal mcp: %w", cerr)
		}
	}()

	hello := mcpgo.InitializeRequest{}
	hello.Params.ProtocolVersion = mcpgo.LATEST_LEGACY_PROTOCOL_VERSION
	hello.Params.ClientInfo = mcpgo.Implementation{Name: "caracal-quickstart", Version: buildVersion().Version}
	if _, err := c.Initialize(ctx, hello); err != nil {
		return fmt.Errorf("initialize the MCP session through caracal mcp: %w", err)
	}
	tools, err := c.ListTools(ctx, mcpgo.ListToolsRequest{})
	if err != nil {
		return fmt.Errorf("tools/list through caracal mcp: %w", err)
	}
	fmt.Fprintf(w, "tools/list, with the price the proxy adds to each tool:\n  %s\n", listedPrices(tools.Tools))

	fmt.Fprintf(w, "\nCalls until the budget of %s %s runs out:\n", env.Policy.Limit, env.Policy.Currency)
	fmt.Fprintf(w, "  %-2s  %-8s  %-20s  %6s  %9s  %s\n", "#", "TOOL", "ARGUMENTS", "PRICE", "REMAINING", "RESULT")
	eng := interpose.New(interpose.Options{Store: st, DefaultPrice: cfg.Pricing.Default, Currency: cfg.Pricing.Currency,
		Strict: cfg.Pricing.Strict, Logger: slog.New(slog.DiscardHandler)})
	for n := range maxDemoCalls {
		tool, targs := demoCall(n)
		req := mcpgo.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = tool, targs
		res, err := c.CallTool(ctx, req)
		if err != nil {
			return fmt.Errorf("tools/call %s through caracal mcp: %w", tool, err)
		}
		refusal, refused := decisionOf(res)
		price := refusal.Price
		if !refused {
			// The proxy relays an allowed call's result untouched; its price
			// is the pricebook's quote for the same arguments.
			raw, _ := json.Marshal(targs)
			q, err := eng.Quote(ctx, metering.Resource(demoServer, tool), raw, nil)
			if err != nil {
				return err
			}
			price = q.Price
		}
		left, err := demoRemaining(ctx, st, env.Policy)
		if err != nil {
			return err
		}
		result := "refused: " + refusal.Code
		if !refused {
			result = shorten(resultText(res), 40)
		}
		fmt.Fprintf(w, "  %-2d  %-8s  %-20s  %6s  %9s  %s\n", n+1, tool, argsLabel(targs), price, left, result)
		if refused {
			fmt.Fprintf(w, "\nThe proxy answered call %d itself; the server never saw it. The agent read:\n  %s\n", n+1, resultText(res))
			return nil
		}
	}
	fmt.Fprintf(w, "\nNo call was refused in %d calls: the demo's prices (mcp:%s/*) must have been lowered.\n", maxDemoCalls, demoServer)
	return nil
}

// demoRefusal is what the proxy puts in a refused call's structuredContent.
type demoRefusal struct {
	Code  string       `json:"code"`
	Price money.Amount `json:"price"`
}

// decisionOf reports whether res is the proxy's refusal, and its details.
func decisionOf(res *mcpgo.CallToolResult) (demoRefusal, bool) {
	var d demoRefusal
	if !res.IsError || res.StructuredContent == nil {
		return d, false
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil || json.Unmarshal(b, &d) != nil || d.Code == "" {
		return d, false
	}
	return d, true
}

// demoRemaining is what is left of the demo budget, reservations of calls
// still being settled included.
func demoRemaining(ctx context.Context, st ledger.Store, p policy.Policy) (money.Amount, error) {
	us, err := st.Usage(ctx, p.AgentID, time.Now())
	if err != nil {
		return 0, fmt.Errorf("read the demo budget: %w", err)
	}
	for _, u := range us {
		if u.Policy.ID == p.ID {
			left, err := p.Limit.Sub(u.Spent)
			if err == nil {
				left, err = left.Sub(u.Reserved)
			}
			return left, err
		}
	}
	return p.Limit, nil
}

// listedPrices summarises the price _meta of listed tools on one line.
func listedPrices(tools []mcpgo.Tool) string {
	parts := make([]string, 0, len(tools))
	for _, t := range tools {
		var pm struct {
			Price    string          `json:"price"`
			Currency string          `json:"currency"`
			PerUnit  *policy.PerUnit `json:"per_unit"`
		}
		if t.Meta != nil {
			b, _ := json.Marshal(t.Meta.AdditionalFields[mcp.PriceMetaKey])
			_ = json.Unmarshal(b, &pm)
		}
		s := t.Name + " " + pm.Price + " " + pm.Currency
		if pm.PerUnit != nil {
			s += " + " + pm.PerUnit.Price.String() + " × " + pm.PerUnit.Path
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// argsLabel prints call arguments as short key=value pairs.
func argsLabel(args map[string]any) string {
	if len(args) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(args))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, args[k]))
	}
	return strings.Join(parts, " ")
}

// resultText is the text content of a tool result.
func resultText(res *mcpgo.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if t, ok := mcpgo.AsTextContent(c); ok {
			parts = append(parts, t.Text)
		}
	}
	return strings.Join(parts, " ")
}

// shorten cuts s to at most n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// printDemoLedger prints what the ledger recorded for the demo agent since
// start: this run's calls.
func printDemoLedger(ctx context.Context, env *quickstartEnv, st ledger.Store, start time.Time) error {
	rows, err := st.Summary(ctx, ledger.EventFilter{AgentIDs: []string{env.Agent.ID}, Since: start}, ledger.ByResource)
	if err != nil {
		return fmt.Errorf("summarise the demo ledger: %w", err)
	}
	w := env.IO.Out
	fmt.Fprintf(w, "\nLedger of this run (caracal ledger summary --agent %s --since %s):\n", env.Agent.Name, start.UTC().Format(time.RFC3339))
	cells := make([][]string, 0, len(rows))
	for _, r := range rows {
		cells = append(cells, []string{r.Key, fmt.Sprint(r.Events), r.Charged.String(), fmt.Sprint(r.Denied), r.Currency})
	}
	return printRows(w, FormatTable, nil, []string{"resource", "events", "charged", "denied", "currency"}, cells)
}

// verifyDemoLedger integrates whatever the proxy left queued, then runs the
// full verification of `caracal merkle verify --full` over the whole ledger.
func verifyDemoLedger(ctx context.Context, env *quickstartEnv, home string, st ledger.Store) error {
	signer, err := ledger.LoadSigner(ctx, st, home)
	if err != nil {
		return err
	}
	cp, err := ledger.NewIntegrator(st, signer, ledger.IntegratorConfig{Logger: slog.New(slog.DiscardHandler)}).Flush(ctx)
	if err != nil {
		return fmt.Errorf("integrate the ledger: %w", err)
	}
	w := env.IO.Out
	fmt.Fprintf(w, "\nEvery event is a leaf of the Merkle tree: checkpoint of size %d signed by %s.\n", cp.Size, cp.KeyID)
	ring, err := ledger.KeyRing(ctx, st, false)
	if err != nil {
		return err
	}
	rep, err := ledger.VerifyFull(ctx, st, ring, nil)
	if err != nil {
		return fmt.Errorf("merkle verify --full failed: %w", err)
	}
	fmt.Fprintf(w, "caracal merkle verify --full: OK, %s and %s verified; root %x\n",
		plural(rep.Size, "event"), plural(rep.Checkpoints, "checkpoint"), rep.Root[:])
	return nil
}

// plural prints n with noun, in the plural unless n is 1.
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return formatCount(n) + " " + noun + "s"
}
