package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/telemetry"
	"github.com/caracal-dev/caracal/interpose"
)

// keysOf returns a JSON object's keys in order, duplicates included
// (decoding into a map would hide them).
func keysOf(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", line)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestLogObserverLines(t *testing.T) {
	base := []string{"time", "level", "msg", "component", "outcome", "code", "kind", "agent", "agent_id", "resource", "amount", "currency", "duration_ms"}
	tests := []struct {
		name  string
		rec   interpose.Record
		keys  []string
		level string
		want  map[string]any
	}{
		{
			name: "allowed",
			rec: interpose.Record{Outcome: interpose.Allowed, Code: "allowed", Kind: "mcp", RequestID: "r1", AgentID: "id-1", AgentName: "bot",
				Resource: "mcp:fs/read", Amount: money.MustParse("0.25"), Currency: "USD", Duration: 1500 * time.Microsecond},
			keys:  append(append([]string{}, base...), "request_id"),
			level: "INFO",
			want: map[string]any{"msg": "decision", "component": "mcp", "outcome": "allowed", "code": "allowed", "kind": "mcp", "agent": "bot", "agent_id": "id-1",
				"resource": "mcp:fs/read", "amount": "0.25", "currency": "USD", "duration_ms": 1.5, "request_id": "r1"},
		},
		{
			name: "denied without a name",
			rec: interpose.Record{Outcome: interpose.Denied, Code: "budget_exceeded", Kind: "llm", AgentID: "id-2",
				Resource: "llm:openai/gpt-4o", Amount: money.MustParse("3"), Currency: "EUR", Duration: 2 * time.Millisecond},
			keys:  base,
			level: "INFO",
			want: map[string]any{"outcome": "denied", "code": "budget_exceeded", "kind": "llm", "agent": "id-2", "agent_id": "id-2",
				"amount": "3.00", "currency": "EUR", "duration_ms": 2.0},
		},
		{
			name: "settled with upstream time",
			rec: interpose.Record{Outcome: interpose.Settled, Code: "charged", Kind: "http", RequestID: "r3", AgentID: "id-3", AgentName: "c",
				Resource: "http:api/x", Amount: money.MustParse("0.000000001"), Currency: "USD", Duration: time.Millisecond, Upstream: 1234567 * time.Microsecond},
			keys:  append(append([]string{}, base...), "request_id", "upstream_ms"),
			level: "INFO",
			want:  map[string]any{"outcome": "settled", "code": "charged", "amount": "0.000000001", "upstream_ms": 1234.567},
		},
		{
			name: "store failure",
			rec: interpose.Record{Outcome: interpose.Released, Code: interpose.CodeError, Kind: "mcp", RequestID: "r4", AgentID: "id-4", AgentName: "d",
				Resource: "mcp:a/b", Currency: "USD", Duration: time.Millisecond, Upstream: time.Second, Err: errors.New("store unavailable")},
			keys:  append(append([]string{}, base...), "request_id", "upstream_ms", "err"),
			level: "WARN",
			want:  map[string]any{"outcome": "released", "code": "error", "err": "store unavailable"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, nil)).With("component", "mcp")
			telemetry.LogObserver{Logger: log}.Observe(context.Background(), tt.rec)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d lines: %s", len(lines), buf.String())
			}
			keys := keysOf(t, []byte(lines[0]))
			if !reflect.DeepEqual(keys, tt.keys) {
				t.Errorf("keys %v\nwant %v", keys, tt.keys)
			}
			seen := map[string]bool{}
			for _, k := range keys {
				if seen[k] {
					t.Errorf("attribute %q repeated", k)
				}
				seen[k] = true
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
				t.Fatal(err)
			}
			if got["level"] != tt.level {
				t.Errorf("level %v, want %s", got["level"], tt.level)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
		})
	}
}

// TestLogObserverSkipsSweepAndHonoursLevel: the sweep's summary record is
// not logged again, and at warn level a decision is not logged at all.
func TestLogObserverSkipsSweepAndHonoursLevel(t *testing.T) {
	var buf bytes.Buffer
	telemetry.LogObserver{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}.Observe(context.Background(),
		interpose.Record{Outcome: interpose.Unconfirmed, Code: interpose.CodeExpired, Count: 3})
	telemetry.LogObserver{Logger: telemetry.NewLogger(&buf, slog.LevelWarn, telemetry.FormatJSON)}.Observe(context.Background(),
		interpose.Record{Outcome: interpose.Allowed, Code: "allowed"})
	if buf.Len() != 0 {
		t.Fatalf("logged %s", buf.String())
	}
}

func TestParseLevelAndFormat(t *testing.T) {
	for _, s := range []string{"debug", "INFO", "warn", "error"} {
		if _, err := telemetry.ParseLevel(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "verbose", "info+2", "warning"} {
		if _, err := telemetry.ParseLevel(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	for in, want := range map[string]string{"text": "text", "JSON": "json"} {
		if got, err := telemetry.ParseFormat(in); err != nil || got != want {
			t.Errorf("%s: %q %v", in, got, err)
		}
	}
	if _, err := telemetry.ParseFormat("logfmt"); err == nil {
		t.Error("logfmt accepted")
	}
	// The text format writes key=value lines.
	var buf bytes.Buffer
	telemetry.NewLogger(&buf, slog.LevelInfo, telemetry.FormatText).Info("x", "k", "v")
	if !strings.Contains(buf.String(), "k=v") {
		t.Errorf("text line %q", buf.String())
	}
}
