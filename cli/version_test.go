package cli

import (
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	info := func(v string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: v}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, tc := range []struct {
		name, stamped string
		read          func() (*debug.BuildInfo, bool)
		want          string
	}{
		{"stamped by the Makefile wins", "v1.2.3-4-gabc123-dirty", info("v1.2.2"), "v1.2.3-4-gabc123-dirty"},
		{"module version from a tag", "", info("v1.2.3"), "v1.2.3"},
		{"local build without VCS", "", info("(devel)"), "(devel)"},
		{"no build info", "", none, "(devel)"},
		{"stamped, no build info", "v2.0.0", none, "v2.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionOf(tc.stamped, tc.read).Version; got != tc.want {
				t.Errorf("version = %q, want %q", got, tc.want)
			}
		})
	}
}
