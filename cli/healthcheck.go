package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

type healthcheckOptions struct {
	IO       *IOStreams
	URL      string
	Timeout  time.Duration
	Insecure bool
}

// newHealthcheckCmd is the health check of images that have no shell or curl:
// a container's HEALTHCHECK (or compose's healthcheck) runs the binary
// itself against its own /healthz.
func newHealthcheckCmd(f *Factory) *cobra.Command {
	opts := &healthcheckOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "healthcheck URL",
		Short: "Exit 0 if an HTTP GET of URL answers 2xx (a health check for containers)",
		Example: `  caracal healthcheck http://127.0.0.1:8080/healthz
  caracal healthcheck --timeout 2s http://127.0.0.1:8090/readyz`,
		Args: exactArgs(1, "URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.URL = args[0]
			return runHealthcheck(cmd.Context(), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 3*time.Second, "longest wait for the answer")
	cmd.Flags().BoolVar(&opts.Insecure, "insecure", false, "do not verify an https URL's certificate, as Kubernetes' HTTPS probes do (a listener checked at 127.0.0.1 has a certificate for its public name)")
	return cmd
}

func runHealthcheck(ctx context.Context, opts *healthcheckOptions) error {
	if err := validateHTTPURL(opts.URL); err != nil {
		return Usagef("URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URL, nil)
	if err != nil {
		return Usagef("URL: %v", err)
	}
	client := http.DefaultClient
	if opts.Insecure {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for: a liveness check of the process's own listener
		client = &http.Client{Transport: tr}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("healthcheck %s: %w", opts.URL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("healthcheck %s: %s", opts.URL, resp.Status)
	}
	_, err = fmt.Fprintf(opts.IO.Out, "%s: %s\n", opts.URL, resp.Status)
	return err
}
