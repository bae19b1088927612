package api

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// budgetStatus is `caracal budget status`: every budget that binds the
// agent (its own and its ancestors'), or with include_children every
// descendant's too; without agent, every active policy. An agent key
// reads only its own agent's budgets.
func (s *Server) budgetStatus(w http.ResponseWriter, r *http.Request, p principal) error {
	ctx := r.Context()
	children, err := queryBool(r, "include_children")
	if err != nil {
		return err
	}
	ref := r.URL.Query().Get("agent")
	if children && ref == "" && p.agent == nil {
		return badRequest("include_children: requires agent")
	}
	var ids []string
	switch {
	case p.agent != nil:
		if ref != "" && ref != p.agent.ID && ref != p.agent.Name {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Detail: "an agent key reads only its own agent's budgets"}
		}
		if children {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Detail: "include_children needs an admin token"}
		}
		ids = []string{p.agent.ID}
	case ref != "":
		a, err := s.agentRef(r, "agent", ref)
		if err != nil {
			return err
		}
		ids = []string{a.ID}
		if children {
			all, err := s.opts.Store.ListAgents(ctx)
			if err != nil {
				return storeError("list agents", err)
			}
			ids = policy.Descendants(all, a.ID)
		}
	default:
		all, err := s.opts.Store.ListAgents(ctx)
		if err != nil {
			return storeError("list agents", err)
		}
		for _, a := range all {
			ids = append(ids, a.ID)
		}
	}
	budgets, err := ledger.Budgets(ctx, s.opts.Store, s.now(), ids)
	if err != nil {
		return storeError("read budgets", err)
	}
	return writeJSON(w, http.StatusOK, budgets)
}

// Page sizes of GET /v1/ledger/events.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// eventFilter reads the ledger filters shared by events, summary and
// export: agent, include_children, since, until (RFC 3339), resource
// (glob) and outcome.
func (s *Server) eventFilter(r *http.Request) (ledger.EventFilter, error) {
	var f ledger.EventFilter
	q := r.URL.Query()
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(t.name)
		if v == "" {
			continue
		}
		tm, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, badRequest("%s: invalid time %q: want RFC 3339 such as 2026-01-02T15:04:05Z", t.name, v)
		}
		*t.dst = tm
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, badRequest("until: %s is not after since %s", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	var err error
	if f.Outcome, err = policy.ParseOutcome(q.Get("outcome")); err != nil {
		return f, badRequest("outcome: %v", err)
	}
	if res := q.Get("resource"); res != "" {
		if err := policy.ValidateResourcePattern(res); err != nil {
			return f, badRequest("resource: invalid pattern %q: %v", res, err)
		}
		f.Resource = res
	}
	children, err := queryBool(r, "include_children")
	if err != nil {
		return f, err
	}
	ref := q.Get("agent")
	if children && ref == "" {
		return f, badRequest("include_children: requires agent")
	}
	if ref == "" {
		return f, nil
	}
	a, err := s.agentRef(r, "agent", ref)
	if err != nil {
		return f, err
	}
	f.AgentIDs = []string{a.ID}
	if children {
		all, err := s.opts.Store.ListAgents(r.Context())
		if err != nil {
			return f, storeError("list agents", err)
		}
		f.AgentIDs = policy.Descendants(all, a.ID)
	}
	return f, nil
}

// eventPage is one page of GET /v1/ledger/events, the newest first.
type eventPage struct {
	Events []ledger.Event `json:"events"`
	// NextCursor, passed as cursor, reads the next (older) page; null on
	// the last page.
	NextCursor *string `json:"next_cursor"`
}

func (s *Server) queryEvents(w http.ResponseWriter, r *http.Request, _ principal) error {
	f, err := s.eventFilter(r)
	if err != nil {
		return err
	}
	limit := defaultPageSize
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return badRequest("limit: invalid page size %q: want 1 to %d", v, maxPageSize)
		}
		limit = n
	}
	f.BeforeID = r.URL.Query().Get("cursor")
	f.NewestFirst = true
	// One more than the page tells whether another page follows.
	f.Limit = limit + 1
	page := eventPage{Events: []ledger.Event{}}
	if err := s.opts.Store.QueryEvents(r.Context(), f, func(ev ledger.Event) error {
		page.Events = append(page.Events, ev)
		return nil
	}); err != nil {
		return storeError("query ledger", err)
	}
	if len(page.Events) > limit {
		page.Events = page.Events[:limit]
		next := page.Events[limit-1].ID
		page.NextCursor = &next
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request, _ principal) error {
	f, err := s.eventFilter(r)
	if err != nil {
		return err
	}
	by := ledger.SummaryBy(r.URL.Query().Get("by"))
	switch by {
	case "":
		by = ledger.ByResource
	case ledger.ByResource, ledger.ByAgent, ledger.ByDay:
	default:
		return badRequest("by: invalid grouping %q: want resource, agent or day", by)
	}
	rows, err := s.opts.Store.Summary(r.Context(), f, by)
	if err != nil {
		return storeError("summarise ledger", err)
	}
	return writeJSON(w, http.StatusOK, nonNil(rows))
}

// export streams every matching event in ledger order as JSON Lines or
// CSV (format=jsonl|csv), as `caracal ledger export`; memory does not grow
// with the ledger. A failure after the first byte can only cut the stream
// short: it is logged, and a CSV or JSON Lines reader sees a truncated
// last line.
func (s *Server) export(w http.ResponseWriter, r *http.Request, _ principal) error {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "jsonl"
	}
	if format != "jsonl" && format != "csv" {
		return badRequest("format: unknown format %q: want jsonl or csv", format)
	}
	f, err := s.eventFilter(r)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	started := false
	start := func() {
		if started {
			return
		}
		started = true
		if format == "csv" {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "application/jsonl")
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}
	var emit func(ledger.Event) error
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(bw)
		emit = func(ev ledger.Event) error { return cw.Write(ledger.EventCSVRow(ev)) }
	} else {
		enc := json.NewEncoder(bw)
		emit = func(ev ledger.Event) error { return enc.Encode(ev) }
	}
	// The header row (and the status) wait for the query's first answer,
	// so a store that cannot be reached still gets a problem response.
	first := true
	err = s.opts.Store.QueryEvents(r.Context(), f, func(ev ledger.Event) error {
		if first {
			first = false
			start()
			if cw != nil {
				if err := cw.Write(ledger.EventCSVHeader); err != nil {
					return err
				}
			}
		}
		return emit(ev)
	})
	if err != nil && !started {
		return storeError("export ledger", err)
	}
	if err != nil {
		s.log.Error("ledger export cut short", "err", err)
		return nil
	}
	if first {
		start()
		if cw != nil {
			_ = cw.Write(ledger.EventCSVHeader)
		}
	}
	if cw != nil {
		cw.Flush()
	}
	if err := bw.Flush(); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		s.log.Debug("ledger export: client went away", "err", err)
	}
	return nil
}
