// Package api is the JSON HTTP API of `caracal serve`: the admin
// operations of the CLI (agents, keys, policies, delegations, the
// pricebook, budgets, the ledger and its Merkle proofs) for operators
// holding an admin token, and metering (reserve, settle, release) for any
// program holding an agent key. Every operation calls the same store and
// engine code as the CLI and the proxies; the contract is docs/openapi.yaml.
package api

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/docs"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
)

// Options configure a Server.
type Options struct {
	Store  ledger.Store
	Engine *interpose.Engine
	Logger *slog.Logger
	// MaxDepth is delegation.max_depth: the longest chain an agent
	// registration or a delegation may make.
	MaxDepth int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// MaxBodyBytes bounds a request body; 1 MiB if zero. A pricebook
	// import is the largest body the API takes.
	MaxBodyBytes int64
}

// Server is the API's http.Handler.
type Server struct {
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	openapi []byte // the document as JSON
}

// access is who may call a route.
type access int

const (
	// public routes need no credentials.
	public access = iota
	// admin routes need an admin token; a read-only token may only GET.
	admin
	// agent routes need an agent key: the metering endpoints.
	agent
	// adminOrOwnAgent routes take an admin token, or an agent key for the
	// agent's own resources.
	adminOrOwnAgent
)

// route is one operation: "METHOD /path/{param}" as http.ServeMux reads it.
type route struct {
	pattern string
	access  access
	handle  func(s *Server, w http.ResponseWriter, r *http.Request, p principal) error
}

// routes is the one table the mux is built from and the OpenAPI document
// is checked against.
var routes = []route{
	{"GET /v1/openapi.json", public, (*Server).getOpenAPI},

	{"POST /v1/agents", admin, (*Server).registerAgent},
	{"GET /v1/agents", admin, (*Server).listAgents},
	{"GET /v1/agents/{agent}", admin, (*Server).getAgent},
	{"POST /v1/agents/{agent}/suspend", admin, (*Server).suspendAgent},
	{"POST /v1/agents/{agent}/resume", admin, (*Server).resumeAgent},
	{"POST /v1/agents/{agent}/keys", admin, (*Server).createKey},
	{"GET /v1/agents/{agent}/keys", admin, (*Server).listAgentKeys},
	{"GET /v1/keys", admin, (*Server).listKeys},
	{"POST /v1/keys/{key}/revoke", admin, (*Server).revokeKey},

	{"POST /v1/policies", admin, (*Server).createPolicy},
	{"GET /v1/policies", admin, (*Server).listPolicies},
	{"GET /v1/policies/{policy}", admin, (*Server).getPolicy},
	{"PATCH /v1/policies/{policy}", admin, (*Server).updatePolicy},
	{"POST /v1/policies/{policy}/deactivate", admin, (*Server).deactivatePolicy},
	{"GET /v1/policies/{policy}/history", admin, (*Server).policyHistory},

	{"POST /v1/delegations", admin, (*Server).createDelegation},
	{"GET /v1/delegations", admin, (*Server).listDelegations},
	{"POST /v1/delegations/{policy}/revoke", admin, (*Server).revokeDelegation},

	{"GET /v1/pricebook", admin, (*Server).listPrices},
	{"POST /v1/pricebook/import", admin, (*Server).importPrices},
	{"GET /v1/pricebook/{resource...}", admin, (*Server).getPrice},
	{"PUT /v1/pricebook/{resource...}", admin, (*Server).setPrice},
	{"DELETE /v1/pricebook/{resource...}", admin, (*Server).deletePrice},

	{"GET /v1/budgets", adminOrOwnAgent, (*Server).budgetStatus},

	{"GET /v1/ledger/events", admin, (*Server).queryEvents},
	{"GET /v1/ledger/summary", admin, (*Server).summary},
	{"GET /v1/ledger/export", admin, (*Server).export},

	{"GET /v1/merkle/status", admin, (*Server).merkleStatus},
	{"GET /v1/merkle/checkpoints", admin, (*Server).listCheckpoints},
	{"GET /v1/merkle/checkpoints/latest", admin, (*Server).latestCheckpoint},
	{"GET /v1/merkle/checkpoints/{size}", admin, (*Server).checkpointAt},
	{"GET /v1/merkle/proofs/inclusion", admin, (*Server).proveInclusion},
	{"GET /v1/merkle/proofs/consistency", admin, (*Server).proveConsistency},
	{"GET /v1/merkle/keys", admin, (*Server).signingKeys},

	{"POST /v1/reservations", agent, (*Server).reserve},
	{"POST /v1/reservations/{id}/settle", agent, (*Server).settle},
	{"POST /v1/reservations/{id}/release", agent, (*Server).release},
}

// New returns the API server.
func New(o Options) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	doc, err := docs.OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, log: log, mux: http.NewServeMux(), openapi: doc}
	for _, rt := range routes {
		s.mux.Handle(rt.pattern, s.wrap(rt))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.problem(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Detail: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The mux answers a known path with the wrong method by itself, with
	// text; the problem writer gives it the API's shape instead.
	if _, pattern := s.mux.Handler(r); pattern == "" || pattern == "/" {
		if allowed := s.allowedMethods(r); allowed != "" {
			w.Header().Set("Allow", allowed)
			s.problem(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed, Detail: r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + allowed})
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// wrap authenticates a request for rt and runs its handler.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r.Context(), r, rt.access)
		if err == nil {
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
			}
			err = rt.handle(s, w, r, p)
		}
		if err != nil {
			s.fail(w, r, err)
		}
	})
}

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) getOpenAPI(w http.ResponseWriter, _ *http.Request, _ principal) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(s.openapi)
	return err
}

// Routes lists the API's routes as "METHOD /path" patterns, for tests and
// documentation checks.
func Routes() []string {
	out := make([]string, len(routes))
	for i, rt := range routes {
		out[i] = rt.pattern
	}
	return out
}

// allowedMethods lists the methods the routes accept on r's path, "" if
// none: the path is unknown.
func (s *Server) allowedMethods(r *http.Request) string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := s.mux.Handler(r2); pattern != "" && pattern != "/" {
			out = append(out, m)
		}
	}
	return strings.Join(out, ", ")
}
