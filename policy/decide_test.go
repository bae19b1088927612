package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
)

var (
	root   = Agent{ID: "a-root", Name: "org", Status: StatusActive}
	mid    = Agent{ID: "a-mid", Name: "team", ParentID: "a-root", Status: StatusActive}
	leaf   = Agent{ID: "a-leaf", Name: "research", ParentID: "a-mid", Status: StatusActive}
	leafB  = Agent{ID: "a-leaf-b", Name: "writer", ParentID: "a-mid", Status: StatusActive}
	frozen = func(a Agent) Agent { a.Status = StatusSuspended; return a }
)

func amt(s string) money.Amount { return money.MustParse(s) }

// use builds a policy with usage: id, agent, window, limit, spent, reserved.
func use(id string, a Agent, w Window, limit, spent, reserved string) PolicyUsage {
	return PolicyUsage{
		Policy: Policy{
			ID: id, AgentID: a.ID, Version: 1, Limit: amt(limit), Currency: "USD",
			Window: w, WindowType: WindowCalendar, Timezone: "UTC", Active: true,
		},
		AgentName: a.Name,
		Spent:     amt(spent),
		Reserved:  amt(reserved),
	}
}

func withAllow(pu PolicyUsage, patterns ...string) PolicyUsage {
	pu.Policy.Allow = patterns
	return pu
}

func withCurrency(pu PolicyUsage, c string) PolicyUsage {
	pu.Policy.Currency = c
	return pu
}

func rolling(pu PolicyUsage) PolicyUsage {
	pu.Policy.WindowType = WindowRolling
	return pu
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name     string
		req      Request
		allow    bool
		code     Code
		policyID string
		reason   string            // exact, when set
		left     map[string]string // policy ID → remaining
	}{
		{
			name:   "no policy anywhere: refused by default",
			req:    Request{Chain: []Agent{leaf, mid, root}, Resource: "mcp:fs/read_file", Price: amt("5")},
			code:   CodeNoBudget,
			reason: NoBudgetReason,
			left:   map[string]string{},
		},
		{
			name: "no policy anywhere, a suspended ancestor: suspension is reported first",
			req:  Request{Chain: []Agent{leaf, {ID: "m", Name: "mid", Status: StatusSuspended}}, Resource: "r", Price: amt("5")},
			code: CodeAgentSuspended,
			left: map[string]string{},
		},
		{
			name:  "no policy anywhere, unbudgeted allowed: allowed and unmetered",
			req:   Request{Chain: []Agent{leaf, mid, root}, Resource: "mcp:fs/read_file", Price: amt("5"), AllowUnbudgeted: true},
			allow: true, code: CodeAllowed,
			reason: "no budget applies to the agent or its ancestors: the spend is unmetered but recorded",
			left:   map[string]string{},
		},
		{
			name: "limit 100, 30 spent, free call: remaining 70",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: 0,
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "100", "30", "0")}},
			allow: true, code: CodeAllowed, reason: "within every budget",
			left: map[string]string{"p": "70"},
		},
		{
			name: "limit 100, 30 spent, price 10: remaining 60 after the spend",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("10"),
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "100", "30", "0")}},
			allow: true, code: CodeAllowed, left: map[string]string{"p": "60"},
		},
		{
			name: "spent exactly 100 of 100: denied",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("0.01"),
				Policies: []PolicyUsage{use("p", leaf, WindowTotal, "100", "100", "0")}},
			code: CodeBudgetExceeded, policyID: "p",
			reason: `total budget of agent "research" (policy p): spent 100.00 + reserved 0.00 + price 0.01 exceeds limit 100.00 USD`,
			left:   map[string]string{"p": "0"},
		},
		{
			name: "spent 90 of 100: price 10 fits exactly",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("10"),
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "100", "90", "0")}},
			allow: true, code: CodeAllowed, left: map[string]string{"p": "0"},
		},
		{
			name: "spent 90 of 100: price 10.01 denied",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("10.01"),
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "100", "90", "0")}},
			code: CodeBudgetExceeded, policyID: "p",
			reason: `daily budget of agent "research" (policy p): spent 90.00 + reserved 0.00 + price 10.01 exceeds limit 100.00 USD`,
			left:   map[string]string{"p": "10"},
		},
		{
			name: "reserved counts like spent",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("1.01"),
				Policies: []PolicyUsage{use("3f2a", leaf, WindowDaily, "10", "4", "5")}},
			code: CodeBudgetExceeded, policyID: "3f2a",
			reason: `daily budget of agent "research" (policy 3f2a): spent 4.00 + reserved 5.00 + price 1.01 exceeds limit 10.00 USD`,
			left:   map[string]string{"3f2a": "1"},
		},
		{
			name: "reserved counts like spent: what is left still fits",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("1"),
				Policies: []PolicyUsage{use("3f2a", leaf, WindowDaily, "10", "4", "5")}},
			allow: true, code: CodeAllowed, left: map[string]string{"3f2a": "0"},
		},
		{
			name: "a reservation blocks the next spend",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("1"),
				Policies: []PolicyUsage{use("p", leaf, WindowHourly, "10", "5", "5")}},
			code: CodeBudgetExceeded, policyID: "p",
			reason: `hourly budget of agent "research" (policy p): spent 5.00 + reserved 5.00 + price 1.00 exceeds limit 10.00 USD`,
			left:   map[string]string{"p": "0"},
		},
		{
			name: "a free call passes an exhausted budget",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: 0,
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "10", "10", "0")}},
			allow: true, code: CodeAllowed, left: map[string]string{"p": "0"},
		},
		{
			name: "daily 10 and monthly 100 with 15 spent today: the daily policy denies",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("0.50"),
				Policies: []PolicyUsage{
					use("monthly", leaf, WindowMonthly, "100", "15", "0"),
					use("daily", leaf, WindowDaily, "10", "15", "0"),
				}},
			code: CodeBudgetExceeded, policyID: "daily",
			reason: `daily budget of agent "research" (policy daily): spent 15.00 + reserved 0.00 + price 0.50 exceeds limit 10.00 USD`,
			left:   map[string]string{"monthly": "85", "daily": "0"},
		},
		{
			name: "rolling window is named as such",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("2"),
				Policies: []PolicyUsage{rolling(use("p", leaf, WindowDaily, "1", "0", "0"))}},
			code: CodeBudgetExceeded, policyID: "p",
			reason: `rolling daily budget of agent "research" (policy p): spent 0.00 + reserved 0.00 + price 2.00 exceeds limit 1.00 USD`,
			left:   map[string]string{"p": "1"},
		},
		{
			name: "delegation: parent has 2 left after a child spent 8; sibling may spend 2",
			req: Request{Chain: []Agent{leafB, mid}, Resource: "r", Price: amt("2"),
				Policies: []PolicyUsage{use("parent", mid, WindowDaily, "10", "8", "0")}},
			allow: true, code: CodeAllowed, left: map[string]string{"parent": "0"},
		},
		{
			name: "delegation: sibling may not spend 2.01",
			req: Request{Chain: []Agent{leafB, mid}, Resource: "r", Price: amt("2.01"),
				Policies: []PolicyUsage{use("parent", mid, WindowDaily, "10", "8", "0")}},
			code: CodeBudgetExceeded, policyID: "parent",
			reason: `daily budget of agent "team" (policy parent): spent 8.00 + reserved 0.00 + price 2.01 exceeds limit 10.00 USD`,
			left:   map[string]string{"parent": "2"},
		},
		{
			name: "chain order: the agent's own policy is named before an ancestor's",
			req: Request{Chain: []Agent{leaf, mid, root}, Resource: "r", Price: amt("5"),
				Policies: []PolicyUsage{
					use("root", root, WindowDaily, "1", "0", "0"),
					use("mid", mid, WindowDaily, "1", "0", "0"),
					use("leaf", leaf, WindowDaily, "1", "0", "0"),
				}},
			code: CodeBudgetExceeded, policyID: "leaf",
			left: map[string]string{"leaf": "1", "mid": "1", "root": "1"},
		},
		{
			name: "grandchild spend checked against all three levels",
			req: Request{Chain: []Agent{leaf, mid, root}, Resource: "r", Price: amt("1"),
				Policies: []PolicyUsage{
					use("leaf", leaf, WindowDaily, "5", "1", "0"),
					use("mid", mid, WindowDaily, "10", "3", "0"),
					use("root", root, WindowMonthly, "100", "99.5", "0"),
				}},
			code: CodeBudgetExceeded, policyID: "root",
			reason: `monthly budget of agent "org" (policy root): spent 99.50 + reserved 0.00 + price 1.00 exceeds limit 100.00 USD`,
			left:   map[string]string{"leaf": "4", "mid": "7", "root": "0.50"},
		},
		{
			name: "suspended agent",
			req: Request{Chain: []Agent{frozen(leaf), mid}, Resource: "r", Price: amt("1"),
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "10", "0", "0")}},
			code: CodeAgentSuspended, reason: `agent "research" is suspended`,
			left: map[string]string{"p": "10"},
		},
		{
			name: "suspended ancestor",
			req: Request{Chain: []Agent{leaf, mid, frozen(root)}, Resource: "r", Price: amt("1"),
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "10", "0", "0")}},
			code: CodeAgentSuspended, reason: `agent "research" cannot spend: its ancestor "org" is suspended`,
			left: map[string]string{"p": "10"},
		},
		{
			name: "suspension beats budget",
			req: Request{Chain: []Agent{leaf, frozen(mid)}, Resource: "r", Price: amt("100"),
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "10", "0", "0")}},
			code: CodeAgentSuspended, reason: `agent "research" cannot spend: its ancestor "team" is suspended`,
			left: map[string]string{"p": "10"},
		},
		{
			name:   "unknown status fails closed",
			req:    Request{Chain: []Agent{{ID: "x", Name: "x"}}, Resource: "r"},
			code:   CodeAgentSuspended,
			reason: `agent "x" is not active (status "")`,
			left:   map[string]string{},
		},
		{
			name: "allowlist: matching resource allowed",
			req: Request{Chain: []Agent{leaf}, Resource: "mcp:fs/read_file", Price: amt("1"),
				Policies: []PolicyUsage{withAllow(use("p", leaf, WindowDaily, "10", "0", "0"), "mcp:search/*", "mcp:fs/read_*")}},
			allow: true, code: CodeAllowed, left: map[string]string{"p": "9"},
		},
		{
			name: "allowlist: other resource not allowed",
			req: Request{Chain: []Agent{leaf}, Resource: "mcp:fs/write_file", Price: amt("1"),
				Policies: []PolicyUsage{withAllow(use("p", leaf, WindowDaily, "10", "0", "0"), "mcp:search/*", "mcp:fs/read_*")}},
			code: CodeNotAllowed, policyID: "p",
			reason: `resource "mcp:fs/write_file" is not in the allowlist of daily budget of agent "research" (policy p)`,
			left:   map[string]string{"p": "10"},
		},
		{
			name: "allowlist of an ancestor applies, before any budget",
			req: Request{Chain: []Agent{leaf, mid}, Resource: "llm:openai/gpt-5", Price: amt("50"),
				Policies: []PolicyUsage{
					use("own", leaf, WindowDaily, "10", "0", "0"),
					withAllow(use("team", mid, WindowMonthly, "100", "0", "0"), "llm:openai/gpt-4o*"),
				}},
			code: CodeNotAllowed, policyID: "team",
			reason: `resource "llm:openai/gpt-5" is not in the allowlist of monthly budget of agent "team" (policy team)`,
			left:   map[string]string{"own": "10", "team": "100"},
		},
		{
			name: "currency mismatch",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("1"), Currency: "USD",
				Policies: []PolicyUsage{withCurrency(use("p", leaf, WindowDaily, "10", "0", "0"), "EUR")}},
			code: CodeCurrency, policyID: "p",
			reason: `price is in USD but daily budget of agent "research" (policy p) is in EUR`,
			left:   map[string]string{"p": "10"},
		},
		{
			name: "empty request currency means USD",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("1"),
				Policies: []PolicyUsage{withCurrency(use("p", leaf, WindowDaily, "10", "0", "0"), "EUR")}},
			code: CodeCurrency, policyID: "p",
			reason: `price is in USD but daily budget of agent "research" (policy p) is in EUR`,
			left:   map[string]string{"p": "10"},
		},
		{
			name: "matching non-default currency",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("1"), Currency: "EUR",
				Policies: []PolicyUsage{withCurrency(use("p", leaf, WindowDaily, "10", "0", "0"), "EUR")}},
			allow: true, code: CodeAllowed, left: map[string]string{"p": "9"},
		},
		{
			name:   "empty chain",
			req:    Request{Resource: "r", Price: amt("1")},
			code:   CodeUnknownAgent,
			reason: "no agent to charge",
			left:   map[string]string{},
		},
		{
			name: "negative price fails closed",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("-1"),
				Policies: []PolicyUsage{use("p", leaf, WindowDaily, "10", "0", "0")}},
			code: CodeUnavailable, reason: `invalid negative price -1.00 USD for "r"`,
			left: map[string]string{"p": "10"},
		},
		{
			name: "overflowing usage is over the limit",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("1"),
				Policies: []PolicyUsage{use("p", leaf, WindowTotal, "9223372036", "9223372036.85", "0")}},
			code: CodeBudgetExceeded, policyID: "p",
			left: map[string]string{"p": "0"},
		},
		{
			name: "inactive policies given are still enforced",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("2"),
				Policies: []PolicyUsage{func() PolicyUsage {
					pu := use("p", leaf, WindowDaily, "1", "0", "0")
					pu.Policy.Active = false
					return pu
				}()}},
			code: CodeBudgetExceeded, policyID: "p",
			left: map[string]string{"p": "1"},
		},
		{
			name: "policy of an agent off the chain is checked last",
			req: Request{Chain: []Agent{leaf}, Resource: "r", Price: amt("2"),
				Policies: []PolicyUsage{
					use("stray", Agent{ID: "elsewhere", Name: "other"}, WindowDaily, "1", "0", "0"),
					use("own", leaf, WindowDaily, "1", "0", "0"),
				}},
			code: CodeBudgetExceeded, policyID: "own",
			left: map[string]string{"own": "1", "stray": "1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(&tt.req)
			if d.Allow != tt.allow || d.Code != tt.code || d.PolicyID != tt.policyID {
				t.Fatalf("Decide = allow %v code %q policy %q (%s); want allow %v code %q policy %q",
					d.Allow, d.Code, d.PolicyID, d.Reason, tt.allow, tt.code, tt.policyID)
			}
			if tt.reason != "" && d.Reason != tt.reason {
				t.Fatalf("reason = %q\nwant     %q", d.Reason, tt.reason)
			}
			if d.Reason == "" {
				t.Fatal("empty reason")
			}
			wantCurrency := tt.req.Currency
			if wantCurrency == "" {
				wantCurrency = "USD"
			}
			if d.Price != tt.req.Price || d.Currency != wantCurrency {
				t.Fatalf("price = %v %s, want %v %s", d.Price, d.Currency, tt.req.Price, wantCurrency)
			}
			got := map[string]string{}
			for _, r := range d.Remaining {
				if r.Remaining < 0 {
					t.Fatalf("negative remaining %v for %s", r.Remaining, r.PolicyID)
				}
				got[r.PolicyID] = r.Remaining.String()
			}
			want := map[string]string{}
			for id, s := range tt.left {
				want[id] = amt(s).String()
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("remaining = %v, want %v", got, want)
			}
		})
	}
}

func TestDecideRemainingDetail(t *testing.T) {
	req := Request{
		Chain:    []Agent{leaf, mid, root},
		Resource: "mcp:fs/read_file",
		Price:    amt("0.25"),
		Currency: "USD",
		Policies: []PolicyUsage{
			use("root", root, WindowMonthly, "100", "40", "10"),
			{Policy: use("leaf", leaf, WindowDaily, "5", "1", "0.5").Policy, Spent: amt("1"), Reserved: amt("0.5")}, // no AgentName: taken from the chain
			use("mid", mid, WindowWeekly, "20", "0", "0"),
		},
	}
	d := Decide(&req)
	want := []Remaining{
		{PolicyID: "leaf", AgentID: "a-leaf", AgentName: "research", Window: WindowDaily, Limit: amt("5"), Spent: amt("1"), Reserved: amt("0.75"), Remaining: amt("3.25"), Currency: "USD"},
		{PolicyID: "mid", AgentID: "a-mid", AgentName: "team", Window: WindowWeekly, Limit: amt("20"), Spent: 0, Reserved: amt("0.25"), Remaining: amt("19.75"), Currency: "USD"},
		{PolicyID: "root", AgentID: "a-root", AgentName: "org", Window: WindowMonthly, Limit: amt("100"), Spent: amt("40"), Reserved: amt("10.25"), Remaining: amt("49.75"), Currency: "USD"},
	}
	if !d.Allow || !reflect.DeepEqual(d.Remaining, want) {
		t.Fatalf("Decide = %+v\nwant remaining %+v", d, want)
	}
	// The request is not modified.
	if req.Policies[0].Policy.ID != "root" || req.Price != amt("0.25") {
		t.Fatal("Decide modified its request")
	}
}

// TestDecideRemainingIsBudgetAfter: the figures of a decision are those
// PolicyUsage.Budget gives for the state it leaves (the price reserved
// when allowed, nothing when denied), so limit − spent − reserved =
// remaining in both.
func TestDecideRemainingIsBudgetAfter(t *testing.T) {
	for _, tt := range []struct {
		name, limit, spent, reserved, price string
		allow                               bool
	}{
		{"first reservation", "1", "0", "0", "0.4", true},
		{"on top of others", "1", "0.1", "0.2", "0.4", true},
		{"to the limit", "1", "0.5", "0.1", "0.4", true},
		{"free call", "1", "0.5", "0", "0", true},
		{"denied", "1", "0.5", "0.2", "0.4", false},
		{"overspent", "1", "1.5", "0", "0", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pu := use("p", leaf, WindowTotal, tt.limit, tt.spent, tt.reserved)
			d := Decide(&Request{Chain: []Agent{leaf}, Resource: "r", Price: amt(tt.price), Currency: "USD", Policies: []PolicyUsage{pu}})
			if d.Allow != tt.allow || len(d.Remaining) != 1 {
				t.Fatalf("Decide = %+v, want allow %v", d, tt.allow)
			}
			after := pu
			if d.Allow {
				after.Reserved += amt(tt.price)
			}
			b, err := after.Budget(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			r := d.Remaining[0]
			if r.Limit != b.Limit || r.Spent != b.Spent || r.Reserved != b.Reserved || r.Remaining != b.Remaining {
				t.Fatalf("Decide reports limit %s spent %s reserved %s remaining %s; budget status after it: %s %s %s %s",
					r.Limit, r.Spent, r.Reserved, r.Remaining, b.Limit, b.Spent, b.Reserved, b.Remaining)
			}
			if left, _ := money.Sum(r.Spent, r.Reserved, r.Remaining); r.Remaining > 0 && left != r.Limit {
				t.Fatalf("spent %s + reserved %s + remaining %s ≠ limit %s", r.Spent, r.Reserved, r.Remaining, r.Limit)
			}
		})
	}
}

func TestDecideManyPolicies(t *testing.T) {
	// More policies than the stack buffer holds.
	req := Request{Chain: []Agent{leaf, mid, root}, Resource: "r", Price: amt("1")}
	for i := 0; i < 40; i++ {
		a := []Agent{leaf, mid, root}[i%3]
		req.Policies = append(req.Policies, use(string(rune('A'+i)), a, WindowDaily, "10", "0", "0"))
	}
	req.Policies[38].Spent = amt("9.5") // root's (38 % 3 == 2), checked last
	d := Decide(&req)
	if d.Allow || d.PolicyID != string(rune('A'+38)) || len(d.Remaining) != 40 {
		t.Fatalf("Decide = %v %q, %d remaining", d.Allow, d.PolicyID, len(d.Remaining))
	}
	rank := map[string]int{"a-leaf": 0, "a-mid": 1, "a-root": 2}
	for i := 1; i < len(d.Remaining); i++ {
		if rank[d.Remaining[i].AgentID] < rank[d.Remaining[i-1].AgentID] {
			t.Fatalf("remaining[%d] is %s's after %s's: not in chain order", i, d.Remaining[i].AgentID, d.Remaining[i-1].AgentID)
		}
	}
	if !strings.Contains(d.Reason, `agent "org"`) {
		t.Fatalf("reason %q", d.Reason)
	}
}

// benchRequest is the benchmark's shape: a 3-level chain with one policy
// per level.
func benchRequest() *Request {
	return &Request{
		Chain:    []Agent{leaf, mid, root},
		Resource: "mcp:search/web",
		Price:    amt("0.01"),
		Currency: "USD",
		Policies: []PolicyUsage{
			withAllow(use("11111111-aaaa-4bbb-8ccc-000000000001", leaf, WindowDaily, "10", "3.50", "0.02"), "mcp:fs/*", "mcp:search/*"),
			use("11111111-aaaa-4bbb-8ccc-000000000002", mid, WindowWeekly, "100", "42", "1"),
			use("11111111-aaaa-4bbb-8ccc-000000000003", root, WindowMonthly, "1000", "420", "3"),
		},
	}
}

func TestDecideAllocs(t *testing.T) {
	req := benchRequest()
	var d Decision
	allocs := testing.AllocsPerRun(100, func() { d = Decide(req) })
	if !d.Allow {
		t.Fatalf("benchmark request denied: %s", d.Reason)
	}
	// One allocation: the Remaining slice.
	if allocs > 1 {
		t.Fatalf("Decide allocates %.0f times per allowed decision, want ≤ 1", allocs)
	}
}

func BenchmarkDecide(b *testing.B) {
	req := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		if d := Decide(req); !d.Allow {
			b.Fatal(d.Reason)
		}
	}
}

func BenchmarkDecideDeny(b *testing.B) {
	req := benchRequest()
	req.Policies[2].Spent = amt("1000")
	b.ReportAllocs()
	for b.Loop() {
		if d := Decide(req); d.Allow {
			b.Fatal("allowed")
		}
	}
}
