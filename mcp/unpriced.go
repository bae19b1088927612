package mcp

// noteUnpriced logs, once per upstream for the life of the proxy, the
// tools of its first tools/list that no price rule prices: each call to
// them is charged pricing.default, so the operator learns which prices
// are missing before the ledger fills with unpriced events.
func (p *Proxy) noteUnpriced(upstream string, tools []string) {
	if _, seen := p.unpricedNoted.LoadOrStore(upstream, true); seen || len(tools) == 0 {
		return
	}
	p.log.Warn("tools without a price: each call is charged pricing.default and recorded as unpriced; add price rules for them (caracal pricebook set)",
		"upstream", upstream, "count", len(tools), "tools", tools)
}
