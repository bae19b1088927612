package policy

import (
	"strings"
	"testing"
)

func TestValidateAgentName(t *testing.T) {
	tests := []struct {
		name, want string
	}{
		{"research-bot", ""},
		{"a", ""},
		{"A.b_c-9", ""},
		{strings.Repeat("x", 64), ""},
		{"", "agent name is required"},
		{"my bot", `invalid agent name "my bot": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{" padded", `invalid agent name " padded": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"tab\there", `invalid agent name "tab\there": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"-dash", `invalid agent name "-dash": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"ünïcode", `invalid agent name "ünïcode": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{strings.Repeat("x", 65), `invalid agent name "` + strings.Repeat("x", 65) + `": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"0b5c7a52-3d3e-4a8e-9d7e-1f6f4b2c9a10", `agent name "0b5c7a52-3d3e-4a8e-9d7e-1f6f4b2c9a10" must not be a UUID: UUIDs are agent IDs`},
		{"0b5c7a523d3e4a8e9d7e1f6f4b2c9a10", `agent name "0b5c7a523d3e4a8e9d7e1f6f4b2c9a10" must not be a UUID: UUIDs are agent IDs`},
	}
	for _, tc := range tests {
		err := ValidateAgentName(tc.name)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("ValidateAgentName(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
