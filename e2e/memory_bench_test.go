package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// BenchmarkMCPResidentMemory measures the peak resident memory (VmHWM) of a
// `caracal mcp` process, built without the race detector as users run it,
// in front of the priced example server while b.N tools/call requests are
// written without waiting, so up to all of them are in flight at once.
func BenchmarkMCPResidentMemory(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "caracal")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/caracal").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	home := filepath.Join(dir, "home")
	env := append(os.Environ(), "CARACAL_HOME="+home)
	for _, args := range [][]string{
		{"init"},
		{"agent", "register", "--name", "bench", "--owner", "bench"},
		{"policy", "create", "--agent", "bench", "--limit", "1000000"},
		{"pricebook", "set", "mcp:weather/*", "--per-call", "0.001"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("caracal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	proxy := exec.Command(bin, "mcp", "--agent", "bench", "--name", "weather", "--log-level", "error", "--", bin, "quickstart", "example-server")
	proxy.Env = env
	proxy.Stderr = os.Stderr
	stdin, err := proxy.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := proxy.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := proxy.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = proxy.Wait()
	}()
	out := bufio.NewReaderSize(stdout, 1<<20)
	send := func(line string) {
		if _, err := io.WriteString(stdin, line+"\n"); err != nil {
			b.Fatal(err)
		}
	}
	send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	if _, err := out.ReadBytes('\n'); err != nil {
		b.Fatal(err)
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	b.ResetTimer()
	go func() {
		for i := 1; i <= b.N; i++ {
			send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"forecast","arguments":{"city":"Lisbon"}}}`, i))
		}
	}()
	for got := 0; got < b.N; {
		line, err := out.ReadBytes('\n')
		if err != nil {
			b.Fatalf("after %d responses: %v", got, err)
		}
		if gjson.GetBytes(line, "id").Int() > 0 {
			if gjson.GetBytes(line, "result.isError").Bool() {
				b.Fatalf("call refused: %s", line)
			}
			got++
		}
	}
	b.StopTimer()
	hwm, err := peakRSS(proxy.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(hwm)/1024, "peak-rss-MB")
}

// peakRSS reads a process's peak resident set size in KiB from /proc.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
