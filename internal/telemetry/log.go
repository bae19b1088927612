// Package telemetry makes Caracal observable: a log line and metrics for
// every decision the engine takes (both are interpose.Observers), the
// Prometheus registry and its scrape-time collectors, and the /healthz,
// /readyz and /metrics routes served beside the proxies.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/caracal-dev/caracal/interpose"
)

// Log formats.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// ParseLevel reads debug, info, warn or error (any case).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug", "info", "warn", "error":
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return 0, fmt.Errorf("invalid log level %q: want debug, info, warn or error", s)
		}
		return l, nil
	}
	return 0, fmt.Errorf("invalid log level %q: want debug, info, warn or error", s)
}

// ParseFormat reads text or json (any case).
func ParseFormat(s string) (string, error) {
	switch f := strings.ToLower(strings.TrimSpace(s)); f {
	case FormatText, FormatJSON:
		return f, nil
	}
	return "", fmt.Errorf("invalid log format %q: want text or json", s)
}

// NewLogger returns a logger writing format (text or json) at level and
// above to w.
func NewLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if format == FormatJSON {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// DecisionMessage is the message of every decision's log line.
const DecisionMessage = "decision"

// LogObserver writes one line per decision at info level (warn when the
// store failed to record it). Each attribute appears once: outcome, code,
// kind, agent (the name, else the ID), agent_id, resource, amount (exact
// decimal), currency, duration_ms (the engine's time to decide), then when
// known request_id, upstream_ms (how long the call was out) and err.
type LogObserver struct {
	Logger *slog.Logger
}

var _ interpose.Observer = LogObserver{}

// Observe implements interpose.Observer.
func (o LogObserver) Observe(ctx context.Context, r interpose.Record) {
	if r.Code == interpose.CodeExpired {
		// The engine's sweep already logs how many expired.
		return
	}
	level := slog.LevelInfo
	if r.Code == interpose.CodeError {
		level = slog.LevelWarn
	}
	if !o.Logger.Enabled(ctx, level) {
		return
	}
	agent := r.AgentName
	if agent == "" {
		agent = r.AgentID
	}
	attrs := make([]slog.Attr, 0, 13)
	attrs = append(attrs,
		slog.String("outcome", r.Outcome),
		slog.String("code", r.Code),
		slog.String("kind", r.Kind),
		slog.String("agent", agent),
		slog.String("agent_id", r.AgentID),
		slog.String("resource", r.Resource),
		slog.String("amount", r.Amount.String()),
		slog.String("currency", r.Currency),
		slog.Float64("duration_ms", ms(r.Duration.Seconds())),
	)
	if r.RequestID != "" {
		attrs = append(attrs, slog.String("request_id", r.RequestID))
	}
	if r.Upstream > 0 {
		attrs = append(attrs, slog.Float64("upstream_ms", ms(r.Upstream.Seconds())))
	}
	if r.Err != nil {
		attrs = append(attrs, slog.String("err", r.Err.Error()))
	}
	o.Logger.LogAttrs(ctx, level, DecisionMessage, attrs...)
}

// ms turns seconds into milliseconds rounded to the microsecond, which is
// as fine as a log reader needs.
func ms(s float64) float64 {
	return float64(int64(s*1e6+0.5)) / 1e3
}
