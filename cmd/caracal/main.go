// Command caracal meters and enforces spending budgets for AI agents.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/caracal-dev/caracal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
