package policy

import "testing"

func TestValidatePolicy(t *testing.T) {
	ok := Policy{Limit: amt("10"), Currency: "USD", Window: WindowDaily, WindowType: WindowCalendar, Timezone: "Europe/Paris",
		Allow: []string{"mcp:fs/*"}}
	tests := []struct {
		name string
		edit func(*Policy)
		want string // "" for valid
	}{
		{"valid", func(*Policy) {}, ""},
		{"zero limit", func(p *Policy) { p.Limit = 0 }, ""},
		{"rolling", func(p *Policy) { p.WindowType = WindowRolling }, ""},
		{"total calendar", func(p *Policy) { p.Window = WindowTotal }, ""},
		{"negative limit", func(p *Policy) { p.Limit = amt("-1") }, "limit: negative amount -1.00"},
		{"bad currency", func(p *Policy) { p.Currency = "usd" }, `invalid currency "usd": want a three-letter code such as USD`},
		{"empty currency", func(p *Policy) { p.Currency = "" }, `invalid currency "": want a three-letter code such as USD`},
		{"bad window", func(p *Policy) { p.Window = "fortnightly" }, `invalid window "fortnightly": want one of total, hourly, daily, weekly, monthly`},
		{"bad window type", func(p *Policy) { p.WindowType = "sliding" }, `invalid window type "sliding": want calendar or rolling`},
		{"empty window type", func(p *Policy) { p.WindowType = "" }, `invalid window type "": want calendar or rolling`},
		{"total rolling", func(p *Policy) { p.Window, p.WindowType = WindowTotal, WindowRolling },
			`invalid window type "rolling" for window "total": a total budget never resets, so it cannot roll; use calendar`},
		{"bad time zone", func(p *Policy) { p.Timezone = "Mars/Base" }, `invalid time zone "Mars/Base": unknown time zone Mars/Base`},
		{"bad time zone on a rolling window", func(p *Policy) { p.WindowType, p.Timezone = WindowRolling, "Mars/Base" }, `invalid time zone "Mars/Base": unknown time zone Mars/Base`},
		{"empty time zone", func(p *Policy) { p.Timezone = "" }, `invalid time zone "": want an IANA name such as Europe/Paris or UTC`},
		{"empty allow pattern", func(p *Policy) { p.Allow = []string{"mcp:fs/*", ""} }, "allow pattern 2: empty"},
		{"allow pattern with a space", func(p *Policy) { p.Allow = []string{"mcp:fs/ *"} }, `allow pattern 1: "mcp:fs/ *" contains a space or control character`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.edit(&p)
			err := ValidatePolicy(p)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v\nwant    %q", err, tt.want)
			}
		})
	}
}

func TestNormalizePolicy(t *testing.T) {
	p := NormalizePolicy(Policy{Limit: amt("1"), Window: WindowDaily})
	if p.Currency != "USD" || p.WindowType != WindowCalendar || p.Timezone != "UTC" {
		t.Fatalf("NormalizePolicy = %+v", p)
	}
	if err := ValidatePolicy(p); err != nil {
		t.Fatal(err)
	}
	kept := NormalizePolicy(Policy{Currency: "EUR", WindowType: WindowRolling, Timezone: "Asia/Tokyo"})
	if kept.Currency != "EUR" || kept.WindowType != WindowRolling || kept.Timezone != "Asia/Tokyo" {
		t.Fatalf("NormalizePolicy overwrote set fields: %+v", kept)
	}
}
