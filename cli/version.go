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

// version is stamped by the Makefile's release builds with
// -ldflags "-X github.com/caracal-dev/caracal/cli.version=$(git describe --tags --always --dirty)".
var version string

// buildVersion reports the stamped version when there is one, else the
// version the Go toolchain recorded: the module version for
// `go install …@vX` (or a pseudo-version from the checkout's VCS state),
// "(devel)" when there is none; plus the VCS revision when built inside a
// checkout.
func buildVersion() versionInfo {
	return versionOf(version, debug.ReadBuildInfo)
}

func versionOf(stamped string, read func() (*debug.BuildInfo, bool)) versionInfo {
	v := versionInfo{Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if stamped != "" {
		v.Version = stamped
	}
	bi, ok := read()
	if !ok {
		return v
	}
	if bi.Main.Version != "" && stamped == "" {
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
