package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is `caracal version`'s JSON.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// buildVersion reads the version the Go toolchain stamped into the binary:
// the module version for `go install …@vX`, "(devel)" for a local build,
// plus the VCS revision when built inside a checkout.
func buildVersion() versionInfo {
	v := versionInfo{Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

type versionOptions struct {
	IO     *IOStreams
	Output string
}

func newVersionCmd(f *Factory) *cobra.Command {
	opts := &versionOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print Caracal's version",
		Example: `  caracal version
  caracal version -o json`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return runVersion(opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runVersion(opts *versionOptions) error {
	v := buildVersion()
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, v)
	}
	commit := ""
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if v.Modified {
			c += "+dirty"
		}
		commit = " " + c
	}
	_, err := fmt.Fprintf(opts.IO.Out, "caracal %s%s %s %s\n", v.Version, commit, v.GoVersion, v.Platform)
	return err
}
