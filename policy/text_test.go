package policy

import "testing"

func TestValidateAndEscapeText(t *testing.T) {
	tests := []struct {
		in, err, escaped string
	}{
		{"alice@example.com", "", "alice@example.com"},
		{"Zoë ✓ 日本", "", "Zoë ✓ 日本"},
		{"a\tb", "control character U+0009 at byte 1 is not allowed in free text", `a\tb`},
		{"x\x1b[31m", "control character U+001B at byte 1 is not allowed in free text", `x\x1b[31m`},
		{"\x00", "control character U+0000 at byte 0 is not allowed in free text", `\x00`},
		{"é\u0085", "control character U+0085 at byte 2 is not allowed in free text", `é\u0085`},
		{"ab\u2067c", "control character U+2067 at byte 2 is not allowed in free text", `ab\u2067c`},
		{"\u2029", "control character U+2029 at byte 0 is not allowed in free text", `\u2029`},
	}
	for _, tt := range tests {
		err := ValidateText(tt.in)
		if (err == nil) != (tt.err == "") || (err != nil && err.Error() != tt.err) {
			t.Errorf("ValidateText(%q) = %v, want %q", tt.in, err, tt.err)
		}
		if got := EscapeText(tt.in); got != tt.escaped {
			t.Errorf("EscapeText(%q) = %q, want %q", tt.in, got, tt.escaped)
		}
	}
}
