package llmproxy

import (
	"fmt"
	"net/http"

	"github.com/caracal-dev/caracal/policy"
)

func (c *call) decisionHeaders(h http.Header) {
	h.Set(HeaderRequestID, c.ticket.RequestID)
	h.Set(HeaderDecision, string(policy.CodeAllowed))
	if rem, ok := minRemaining(c.ticket.Decision); ok {
		h.Set(HeaderRemaining, rem)
	}
}

// minRemaining is the binding budget: the least any policy has left.
func minRemaining(d policy.Decision) (string, bool) {
	if len(d.Remaining) == 0 {
		return "", false
	}
	m := d.Remaining[0]
	for _, r := range d.Remaining[1:] {
		if r.Remaining < m.Remaining {
			m = r
		}
	}
	return m.Remaining.String() + " " + m.Currency, true
}

func (p *Proxy) refuse(w http.ResponseWriter, k Kind, d policy.Decision) {
	status := http.StatusPaymentRequired
	if d.Code == policy.CodeUnavailable {
		status = http.StatusServiceUnavailable
	} else {
		// A refusal is final until the budget changes: SDKs must not retry.
		w.Header().Set("X-Should-Retry", "false")
	}
	w.Header().Set(HeaderDecision, string(d.Code))
	if rem, ok := minRemaining(d); ok {
		w.Header().Set(HeaderRemaining, rem)
	}
	reason := d.Reason
	if reason == "" {
		reason = string(d.Code)
	}
	writeErrorCode(w, k, status, d.Code, string(d.Code), "Caracal refused this request ("+string(d.Code)+"): "+reason)
}

func writeError(w http.ResponseWriter, k Kind, status int, code, msg string) {
	writeErrorCode(w, k, status, "", code, msg)
}

func writeErrorCode(w http.ResponseWriter, k Kind, status int, pc policy.Code, code, msg string) {
	b := errorBody(k, status, errorType(k, status, pc), code, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
