// Command fakeprovider serves the fake OpenAI and Anthropic API of package
// fakeprovider, for end-to-end tests and benchmarks. It prints
// "listening on http://ADDR" once it accepts connections.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	openaiKey := flag.String("openai-key", os.Getenv("FAKE_OPENAI_KEY"), "key required on OpenAI routes (empty: any)")
	anthropicKey := flag.String("anthropic-key", os.Getenv("FAKE_ANTHROPIC_KEY"), "key required on Anthropic routes (empty: any)")
	output := flag.Int("output-tokens", 12, "tokens in every answer")
	chunkDelay := flag.Duration("chunk-delay", 0, "pause between stream events")
	record := flag.Bool("record", true, "record credentials, served at /_fake/seen")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeprovider:", err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler:           fakeprovider.New(fakeprovider.Options{OpenAIKey: *openaiKey, AnthropicKey: *anthropicKey, OutputTokens: *output, ChunkDelay: *chunkDelay, Record: *record}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "fakeprovider:", err)
		os.Exit(1)
	}
}
