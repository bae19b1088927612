package cli

import (
	"github.com/spf13/cobra"
)

// Factory holds what commands share: streams, configuration and the store.
// It is created once per process (or per test) and passed to every command
// constructor, so no command reaches for globals.
type Factory struct {
	IO *IOStreams
}

// NewFactory returns a Factory over io.
func NewFactory(io *IOStreams) *Factory {
	return &Factory{IO: io}
}

// Close releases what the factory opened.
func (f *Factory) Close() {}

func (f *Factory) bindGlobalFlags(root *cobra.Command) {}
