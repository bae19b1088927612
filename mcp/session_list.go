package mcp

import (
	"context"
	"encoding/json"
	"time"

	"github.com/caracal-dev/caracal/mcp/metering"
	"github.com/caracal-dev/caracal/policy"
	"github.com/tidwall/gjson"
)

// decorateList filters and prices a single upstream's tools/list result.
func (s *Session) decorateList(u *upstream, m message) []byte {
	tools := gjson.GetBytes(m.raw, "result.tools")
	if !tools.IsArray() || tools.Index == 0 {
		return m.raw
	}
	ctx, cancel := s.settleCtx()
	defer cancel()
	elems, err := s.decorateTools(ctx, u, tools.Array(), false)
	if err != nil {
		s.log.Error("tools/list: allowlist unavailable", "err", err)
		return errorResponse(m.id, codeInternalError, errAllowlistUnavailable)
	}
	return replaceAt(m.raw, tools, joinArray(elems))
}

func joinArray(elems [][]byte) []byte {
	n := 2
	for _, e := range elems {
		n += len(e) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, e := range elems {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']')
}

// errAllowlistUnavailable answers a list the store could not filter. The
// store's own error is logged, never sent: it can name the database's
// address and user.
const errAllowlistUnavailable = "Caracal could not evaluate the agent's allowlist; the operator has been told"

// decorateTools keeps the tools the agent may call, adds their price and,
// in gateway mode, prefixes their names.
func (s *Session) decorateTools(ctx context.Context, u *upstream, tools []gjson.Result, prefix bool) ([][]byte, error) {
	allowed, err := s.p.opts.Meter.Allowlist(ctx, s.agentID)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(tools))
	var unpriced []string
	metaPath := []string{"_meta", gjsonKey(PriceMetaKey)}
	for _, t := range tools {
		name := t.Get("name").String()
		resource := metering.Resource(u.resName(), name)
		if !t.IsObject() || name == "" || !allowed(resource) {
			continue
		}
		var declared *policy.PriceRule
		if u.spec.Trusted {
			declared = metering.DeclaredPrice(resource, t)
			u.setDeclared(name, declared)
		}
		q, err := s.p.opts.Meter.Quote(ctx, resource, nil, declared)
		if err != nil {
			// The store's error stays in the log: it can name the database.
			s.log.Error("tools/list: pricing a tool failed", "resource", resource, "err", err)
		} else if q.Unpriced {
			unpriced = append(unpriced, name)
		}
		mb, _ := json.Marshal(metering.NewPriceMeta(q, err))
		b, err := setPath([]byte(t.Raw), metaPath, mb)
		if err != nil {
			continue // _meta is not an object: not a valid tool
		}
		if prefix {
			nb, _ := json.Marshal(u.resName() + "__" + name)
			if b, err = setPath(b, []string{"name"}, nb); err != nil {
				continue
			}
		}
		out = append(out, b)
	}
	s.p.noteUnpriced(u.resName(), unpriced)
	return out, nil
}

// learnDeclared reads a trusted upstream's whole tool list once, so that a
// host calling a tool it never listed still pays the declared price.
func (s *Session) learnDeclared(ctx context.Context, u *upstream) {
	u.mu.Lock()
	if u.listed || (!u.listFailedAt.IsZero() && time.Since(u.listFailedAt) < discoverRetry) {
		// A read that failed a moment ago is not repeated on every call.
		u.mu.Unlock()
		return
	}
	if ch := u.listing; ch != nil {
		// Another call is reading the list: wait for it, so that this
		// call is priced from the same declarations.
		u.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	ch := make(chan struct{})
	u.listing = ch
	u.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tools, err := s.fetchAll(cctx, u, "tools/list", "tools")
	if err == nil {
		for _, t := range tools {
			name := t.Get("name").String()
			u.setDeclared(name, metering.DeclaredPrice(metering.Resource(u.resName(), name), t))
		}
	} else {
		s.log.Warn("could not read the declared prices of a trusted upstream", "upstream", u.resName(), "err", err)
	}
	u.mu.Lock()
	u.listing = nil
	u.listed = err == nil // a failed read is tried again, a minute later
	if err != nil {
		u.listFailedAt = time.Now()
	}
	u.mu.Unlock()
	close(ch)
}
