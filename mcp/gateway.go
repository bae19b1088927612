package mcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// Gateway mode: one session fronts several upstreams. The proxy answers
// initialize and the list methods itself, prefixes tool and prompt names
// with "<server>__", routes calls by prefix and resource reads by the
// server that listed the URI, and rewrites the ids of server-to-client
// requests so that two upstreams' ids never collide.

const gatewayTimeout = 60 * time.Second

func (s *Session) gatewayInitialize(ctx context.Context, m message) {
	params := []byte(gjson.GetBytes(m.raw, "params").Raw)
	type res struct {
		u   *upstream
		raw []byte
		err error
	}
	results := make([]res, len(s.ups))
	var wg sync.WaitGroup
	for i, u := range s.ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, gatewayTimeout)
			defer cancel()
			raw, err := s.request(cctx, u, "initialize", params)
			results[i] = res{u, raw, err}
		}()
	}
	wg.Wait()
	version := gjson.GetBytes(params, "protocolVersion").String()
	caps := map[string]map[string]json.RawMessage{}
	var instructions []string
	ok := 0
	for _, r := range results {
		if r.err != nil {
			s.log.Error("gateway: upstream failed to initialise", "upstream", r.u.resName(), "err", r.err)
			continue
		}
		ok++
		result := gjson.GetBytes(r.raw, "result")
		r.u.mu.Lock()
		r.u.caps = result.Get("capabilities")
		r.u.mu.Unlock()
		// Speak the oldest revision any upstream speaks.
		if v := result.Get("protocolVersion").String(); v != "" && v < version {
			version = v
		}
		mergeCaps(caps, result.Get("capabilities"))
		if in := result.Get("instructions").String(); in != "" {
			instructions = append(instructions, r.u.resName()+": "+in)
		}
	}
	if ok == 0 {
		s.reply(errorResponse(m.id, codeInternalError, "no upstream server could be initialised"))
		return
	}
	out := map[string]any{
		"protocolVersion": version,
		"capabilities":    caps,
		"serverInfo":      map[string]string{"name": "caracal", "version": s.p.opts.Version},
	}
	if len(instructions) > 0 {
		out["instructions"] = strings.Join(instructions, "\n\n")
	}
	b, _ := json.Marshal(out)
	s.reply(resultResponse(m.id, b))
}

// mergeCaps adds one upstream's capabilities to the gateway's merged set.
func mergeCaps(caps map[string]map[string]json.RawMessage, c gjson.Result) {
	c.ForEach(func(k, v gjson.Result) bool {
		dst := caps[k.String()]
		if dst == nil {
			dst = map[string]json.RawMessage{}
			caps[k.String()] = dst
		}
		v.ForEach(func(sk, sv gjson.Result) bool {
			if old, ok := dst[sk.String()]; !ok || string(old) == "false" {
				dst[sk.String()] = json.RawMessage(sv.Raw)
			}
			return true
		})
		return true
	})
}

func (s *Session) gatewayRequest(ctx context.Context, m message) {
	if s.gatewayModern(ctx, m) {
		return
	}
	switch m.method {
	case "ping":
		s.reply(resultResponse(m.id, []byte("{}")))
	case "tools/list":
		s.gatewayList(ctx, m, "tools", true)
	case "prompts/list":
		s.gatewayList(ctx, m, "prompts", true)
	case "resources/list":
		s.gatewayList(ctx, m, "resources", false)
	case "resources/templates/list":
		s.gatewayList(ctx, m, "resourceTemplates", false)
	case "logging/setLevel":
		params := []byte(gjson.GetBytes(m.raw, "params").Raw)
		for _, u := range s.ups {
			if u.hasCap("logging") {
				cctx, cancel := context.WithTimeout(ctx, gatewayTimeout)
				if _, err := s.request(cctx, u, m.method, params); err != nil {
					s.log.Warn("gateway: logging/setLevel failed", "upstream", u.resName(), "err", err)
				}
				cancel()
			}
		}
		s.reply(resultResponse(m.id, []byte("{}")))
	case "prompts/get":
		s.routeByName(ctx, m, "params.name", []string{"params", "name"})
	case "completion/complete":
		if gjson.GetBytes(m.raw, "params.ref.type").String() == "ref/prompt" {
			s.routeByName(ctx, m, "params.ref.name", []string{"params", "ref", "name"})
			return
		}
		s.routeByURI(ctx, m, gjson.GetBytes(m.raw, "params.ref.uri").String())
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		s.routeByURI(ctx, m, gjson.GetBytes(m.raw, "params.uri").String())
	default:
		s.reply(errorResponse(m.id, codeMethodNotFound, "Method not found: "+m.method+" is not supported by the Caracal gateway"))
	}
}

func (u *upstream) hasCap(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.caps.Get(name).Exists()
}

// routeByName forwards a request naming a prefixed prompt to its server,
// with the prefix removed.
func (s *Session) routeByName(ctx context.Context, m message, get string, path []string) {
	name := gjson.GetBytes(m.raw, get).String()
	server, rest, ok := strings.Cut(name, "__")
	u := s.byName[server]
	if !ok || u == nil {
		s.reply(errorResponse(m.id, codeInvalidParams, "Invalid params: unknown name "+strconv.Quote(name)))
		return
	}
	nb, _ := json.Marshal(rest)
	out, err := setPath(m.raw, path, nb)
	if err != nil {
		s.reply(errorResponse(m.id, codeInvalidParams, "Invalid params: "+err.Error()))
		return
	}
	s.forwardTracked(ctx, m, u, out)
}

// routeByURI forwards a request about a resource to the server that listed
// it, or else to the first server offering resources.
func (s *Session) routeByURI(ctx context.Context, m message, uri string) {
	s.mu.Lock()
	u := s.resOwner[uri]
	s.mu.Unlock()
	if u == nil {
		for _, c := range s.ups {
			if c.hasCap("resources") {
				u = c
				break
			}
		}
	}
	if u == nil {
		s.reply(errorResponse(m.id, codeInvalidParams, "Invalid params: no upstream serves "+strconv.Quote(uri)))
		return
	}
	s.forwardTracked(ctx, m, u, m.raw)
}

func (s *Session) forwardTracked(ctx context.Context, m message, u *upstream, msg []byte) {
	p := &pending{id: m.id, method: m.method, up: u}
	if !s.track(p) {
		s.reply(errorResponse(m.id, codeInvalidRequest, "Invalid Request: a request with this id is already in flight"))
		return
	}
	s.forward(ctx, p, msg)
}

// gatewayList merges a list method over every upstream and pages the
// merged list itself. The cursor is the offset into the merged list.
func (s *Session) gatewayList(ctx context.Context, m message, field string, prefix bool) {
	offset := 0
	if c := gjson.GetBytes(m.raw, "params.cursor").String(); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err == nil {
			offset, err = strconv.Atoi(string(b))
		}
		if err != nil || offset < 0 {
			s.reply(errorResponse(m.id, codeInvalidParams, "Invalid params: unknown cursor"))
			return
		}
	}
	capName := map[string]string{"tools": "tools", "prompts": "prompts", "resources": "resources", "resourceTemplates": "resources"}[field]
	var all [][]byte
	for _, u := range s.ups {
		if !u.hasCap(capName) {
			continue
		}
		items, err := s.fetchAll(ctx, u, m.method, field)
		if err != nil {
			s.log.Error("gateway: list failed", "method", m.method, "upstream", u.resName(), "err", err)
			continue
		}
		switch {
		case field == "tools":
			elems, err := s.decorateTools(ctx, u, items, true)
			if err != nil {
				s.log.Error("tools/list: allowlist unavailable", "err", err)
				s.reply(errorResponse(m.id, codeInternalError, errAllowlistUnavailable))
				return
			}
			all = append(all, elems...)
		case prefix:
			for _, it := range items {
				nb, _ := json.Marshal(u.resName() + "__" + it.Get("name").String())
				if b, err := setPath([]byte(it.Raw), []string{"name"}, nb); err == nil {
					all = append(all, b)
				}
			}
		default:
			s.mu.Lock()
			for _, it := range items {
				if uri := it.Get("uri").String(); uri != "" {
					s.resOwner[uri] = u
				}
				all = append(all, []byte(it.Raw))
			}
			s.mu.Unlock()
		}
	}
	offset = min(offset, len(all))
	end := min(offset+s.p.opts.PageSize, len(all))
	out := []byte(`{"` + field + `":`)
	out = append(out, joinArray(all[offset:end])...)
	if end < len(all) {
		out = append(out, `,"nextCursor":"`...)
		out = append(out, base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))...)
		out = append(out, '"')
	}
	out = append(out, '}')
	s.reply(resultResponse(m.id, out))
}

// fetchAll reads every page of a list method from one upstream.
func (s *Session) fetchAll(ctx context.Context, u *upstream, method, field string) ([]gjson.Result, error) {
	var items []gjson.Result
	cursor := ""
	for page := 0; page < 1000; page++ {
		var params []byte
		if cursor != "" {
			params, _ = json.Marshal(map[string]string{"cursor": cursor})
		}
		cctx, cancel := context.WithTimeout(ctx, gatewayTimeout)
		if err := u.waitReady(cctx, gatewayTimeout); err != nil {
			cancel()
			return nil, err
		}
		resp, err := s.request(cctx, u, method, params)
		cancel()
		if err != nil {
			return nil, err
		}
		items = append(items, gjson.GetBytes(resp, "result."+field).Array()...)
		cursor = gjson.GetBytes(resp, "result.nextCursor").String()
		if cursor == "" {
			return items, nil
		}
	}
	return nil, fmt.Errorf("%s: more than 1000 pages", method)
}
