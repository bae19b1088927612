package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Codes of the API's own errors, in a problem's `code` member beside the
// decision codes of package policy (budget_exceeded, not_allowed, …).
const (
	CodeInvalid          = "invalid_request"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "request_too_large"
	CodeInternal         = "internal_error"
	// CodeUnavailable is policy.CodeUnavailable: the store cannot be reached.
	CodeUnavailable = string(policy.CodeUnavailable)
)

// problemTypeBase prefixes a problem's `type`: the API documentation,
// whose Conventions section lists every code, with the code as fragment.
const problemTypeBase = "https://github.com/caracal-dev/caracal/blob/main/docs/api.md#"

// Error is an API error, written as an RFC 9457 problem.
type Error struct {
	Status int
	Code   string
	Detail string
	// Extra members of the problem object (a denial's remaining budgets).
	Extra map[string]any
}

func (e *Error) Error() string { return e.Detail }

func badRequest(format string, a ...any) error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Detail: fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Detail: fmt.Sprintf(format, a...)}
}

func conflict(format string, a ...any) error {
	return &Error{Status: http.StatusConflict, Code: CodeConflict, Detail: fmt.Sprintf(format, a...)}
}

// storeError maps a store error to an API error: the domain errors keep
// their message (it names what is wrong, never SQL), anything else is a
// failure the client cannot act on, answered generically and logged.
func storeError(what string, err error) error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, ledger.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Detail: err.Error()}
	case errors.Is(err, ledger.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Detail: err.Error()}
	case errors.Is(err, ledger.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Detail: err.Error()}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// fail writes err as a problem. An error that is not an *Error is the
// server's own failure: its text goes to the log only.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &tooBig):
		ae = &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Detail: fmt.Sprintf("request body larger than %d bytes", tooBig.Limit)}
	case errors.Is(err, ledger.ErrUnavailable), errors.Is(err, ledger.ErrSchemaOutdated):
		s.log.Error("store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Detail: "the ledger cannot be reached; try again"}
	case r.Context().Err() != nil:
		return // the client left; nobody reads an answer
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Detail: "the request could not be completed; try again"}
	}
	s.problem(w, r, ae)
}

// problem writes an RFC 9457 application/problem+json body.
func (s *Server) problem(w http.ResponseWriter, _ *http.Request, e *Error) {
	body := map[string]any{}
	for k, v := range e.Extra {
		body[k] = v
	}
	body["type"] = problemTypeBase + e.Code
	body["title"] = http.StatusText(e.Status)
	body["status"] = e.Status
	body["detail"] = e.Detail
	body["code"] = e.Code
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="caracal"`)
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body into v, refusing unknown fields and trailing
// data, so a misspelt field is an error rather than silently ignored.
func decode(r *http.Request, v any) error { return decodeBody(r, v, false) }

// decodeOptional is decode for a body that may be absent or empty.
func decodeOptional(r *http.Request, v any) error { return decodeBody(r, v, true) }

func decodeBody(r *http.Request, v any, optional bool) error {
	if r.Body == nil || r.Body == http.NoBody {
		if optional {
			return nil
		}
		return badRequest("request body required")
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			if optional {
				return nil
			}
			return badRequest("request body required")
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return badRequest("invalid JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("invalid JSON body: data after the object")
	}
	return nil
}
