package policy

import (
	"strings"
	"testing"
)

func TestValidateUpstreamName(t *testing.T) {
	for _, tt := range []struct{ name, err string }{
		{"fs", ""}, {"a-1", ""}, {"b_2", ""}, {"_a", ""},
		{"", "empty name"},
		{"File System", "use lower-case letters"},
		{"Alpha", "use lower-case letters"},
		{"a/b", "use lower-case letters"},
		{"a__b", `must not contain "__" or end in "_"`},
		{"a_", `must not contain "__" or end in "_"`},
	} {
		err := ValidateUpstreamName(tt.name)
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ValidateUpstreamName(%q) = %v, want %q", tt.name, err, tt.err)
		}
	}
}
