package policy

import (
	"encoding/json"
	"testing"
	"time"
)

func TestPolicyUsageRemainingAndPercent(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		limit, spent, reserved string
		remaining              string
		percent                Percent
	}{
		{"unused", "10", "0", "0", "10.00", "0.00"},
		{"spent and reserved", "10", "2.5", "1", "6.50", "35.00"},
		{"truncated not rounded", "3", "1", "0", "2.00", "33.33"},
		{"one nano short of full", "1", "0.999999999", "0", "0.000000001", "99.99"},
		{"full", "5", "3", "2", "0.00", "100.00"},
		{"overspent floors remaining", "5", "7", "0", "0.00", "140.00"},
		{"zero limit", "0", "0", "0", "0.00", "100.00"},
		{"huge amounts do not overflow", "9000000000", "9000000000", "9000000000", "0.00", "200.00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pu := use("p", Agent{ID: "a"}, WindowDaily, tc.limit, tc.spent, tc.reserved)
			if got := pu.Remaining(); got != amt(tc.remaining) {
				t.Errorf("Remaining = %s, want %s", got, tc.remaining)
			}
			if got := pu.PercentUsed(); got != tc.percent {
				t.Errorf("PercentUsed = %s, want %s", got, tc.percent)
			}
		})
	}
}

func TestWindowEnd(t *testing.T) {
	paris := "Europe/Paris"
	for _, tc := range []struct {
		name string
		p    Policy
		now  string
		want string
	}{
		{"hourly utc", Policy{Window: WindowHourly}, "2026-03-01T12:34:56Z", "2026-03-01T13:00:00Z"},
		{"daily utc", Policy{Window: WindowDaily}, "2026-03-01T12:00:00Z", "2026-03-02T00:00:00Z"},
		{"weekly utc from a sunday", Policy{Window: WindowWeekly}, "2026-03-01T12:00:00Z", "2026-03-02T00:00:00Z"},
		{"weekly utc from a monday", Policy{Window: WindowWeekly}, "2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"},
		{"monthly utc december", Policy{Window: WindowMonthly}, "2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"daily paris", Policy{Window: WindowDaily, Timezone: paris}, "2026-03-01T23:30:00Z", "2026-03-02T23:00:00Z"},
		{"daily paris across spring forward", Policy{Window: WindowDaily, Timezone: paris}, "2026-03-29T12:00:00Z", "2026-03-29T22:00:00Z"},
		{"monthly paris", Policy{Window: WindowMonthly, Timezone: paris}, "2026-06-10T00:00:00Z", "2026-06-30T22:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now, _ := time.Parse(time.RFC3339, tc.now)
			got, err := WindowEnd(tc.p, now)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := time.Parse(time.RFC3339, tc.want); !got.Equal(want) {
				t.Errorf("WindowEnd = %s, want %s", got, want)
			}
		})
	}
	for _, p := range []Policy{{Window: WindowTotal}, {Window: WindowDaily, WindowType: WindowRolling}} {
		if _, err := WindowEnd(p, time.Now()); err == nil {
			t.Errorf("WindowEnd(%s %s) = nil error, want one", p.WindowType, p.Window)
		}
	}
}

func TestBudget(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 34, 56, 0, time.UTC)
	cal := use("p1", Agent{ID: "a1", Name: "bot"}, WindowDaily, "10", "2", "3")
	b, err := cal.Budget(now)
	if err != nil {
		t.Fatal(err)
	}
	if b.WindowStart == nil || !b.WindowStart.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) ||
		b.ResetsAt == nil || !b.ResetsAt.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("calendar window: start %v resets %v", b.WindowStart, b.ResetsAt)
	}
	if b.Remaining != amt("5") || b.PercentUsed != "50.00" || b.Agent != "bot" || b.WindowType != WindowCalendar {
		t.Errorf("calendar budget: %+v", b)
	}
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"policy_id":"p1","agent_id":"a1","agent":"bot","window":"daily","window_type":"calendar",` +
		`"window_start":"2026-03-01T00:00:00Z","resets_at":"2026-03-02T00:00:00Z","limit":"10.00","spent":"2.00",` +
		`"reserved":"3.00","remaining":"5.00","currency":"USD","percent_used":50.00}`
	if string(raw) != want {
		t.Errorf("JSON:\n got %s\nwant %s", raw, want)
	}

	roll := rolling(use("p2", Agent{ID: "a1"}, WindowDaily, "10", "0", "0"))
	b, err = roll.Budget(now)
	if err != nil {
		t.Fatal(err)
	}
	if b.ResetsAt != nil || b.Span != 24*time.Hour || b.WindowStart == nil ||
		!b.WindowStart.Equal(time.Date(2026, 2, 28, 12, 35, 0, 0, time.UTC)) {
		t.Errorf("rolling window: start %v resets %v span %v", b.WindowStart, b.ResetsAt, b.Span)
	}
	tot := use("p3", Agent{ID: "a1"}, WindowTotal, "10", "0", "0")
	if b, err = tot.Budget(now); err != nil || b.WindowStart != nil || b.ResetsAt != nil {
		t.Errorf("total window: %+v %v", b, err)
	}
}
